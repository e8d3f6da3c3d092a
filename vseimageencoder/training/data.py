"""The two data forms VSE++ trains and evaluates on, Karpathy-split JSON and precomputed
features, read as :class:`CaptionedSplit` (no torch).
"""
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

CAPTIONS_PER_IMAGE = 5
PathLike = Union[str, os.PathLike]


class DataError(ValueError):
    """A data set could not be used; the message names the file and the fault."""


@dataclass
class CaptionedSplit:
    """One split: ``N`` images and their ``5N`` captions (``5i .. 5i+4`` describe image ``i``).

    Exactly one of ``paths`` (image files) and ``features`` (float32 ``(N, img_dim)``) is set.
    ``names`` identify the images in messages. Every image keeps exactly its first five
    captions (COCO has a few with six or seven); one with fewer is a :class:`DataError`.
    """

    name: str
    captions: List[str]
    names: List[str]
    paths: Optional[List[Path]] = None
    features: Optional[np.ndarray] = None
    source: str = ''
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def precomputed(self) -> bool:
        return self.features is not None

    def caption_image(self, j: int) -> int:
        return j // CAPTIONS_PER_IMAGE

    def check_files(self) -> None:
        """DataError naming the image files that do not exist (all checked up front, so a
        long run does not fail at the end)."""
        if self.paths is None:
            return
        missing = [str(p) for p in self.paths if not p.is_file()]
        if missing:
            raise DataError('%d of the %d images of split %r in %s are missing: %s%s' % (
                len(missing), len(self.paths), self.name, self.source, ', '.join(missing[:5]),
                ' ...' if len(missing) > 5 else ''))


def concat(splits: Sequence[CaptionedSplit], name: str) -> CaptionedSplit:
    """Several splits of one form as one (``train`` + ``restval``)."""
    first = splits[0]
    out = CaptionedSplit(name, [c for s in splits for c in s.captions],
                         [n for s in splits for n in s.names], source=first.source)
    if first.precomputed:
        out.features = np.concatenate([s.features for s in splits])
    else:
        out.paths = [p for s in splits for p in s.paths]
    return out


# --------------------------------------------------------------------------- Karpathy JSON

def read_karpathy(json_path: PathLike) -> list:
    """The ``images`` list of a Karpathy-split JSON; DataError names the file and the fault."""
    json_path = Path(json_path)
    try:
        with open(json_path, encoding='utf-8') as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError('Karpathy JSON %s does not exist' % json_path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError('cannot read the Karpathy JSON %s: %s' % (json_path, e)) from None
    images = data.get('images') if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise DataError("%s is not a Karpathy-split JSON: no 'images' list at the top level" % json_path)
    return images


def karpathy_split(json_path: PathLike, images_root: PathLike, split: str,
                   images: Optional[list] = None) -> CaptionedSplit:
    """The images of one split of a Karpathy JSON, with their first five captions.

    The JSON (``dataset_coco.json``, ...) lists ``images[]`` with ``filename``, optional
    ``filepath``, ``split`` and ``sentences[].raw``; images are read from
    ``ROOT/[filepath/]filename``. Asked for ``dev`` (VSE++'s name), a JSON without a ``dev``
    split gives its ``val`` images.
    """
    json_path, root = Path(json_path), Path(images_root)
    images = read_karpathy(json_path) if images is None else images
    splits_seen = sorted({str(im.get('split')) for im in images if isinstance(im, dict)})
    wanted = split
    if split == 'dev' and 'dev' not in splits_seen and 'val' in splits_seen:
        wanted = 'val'
    paths, names, captions = [], [], []
    for i, im in enumerate(images):
        if not isinstance(im, dict) or im.get('split') != wanted:
            continue
        fname = im.get('filename')
        if not isinstance(fname, str) or not fname:
            raise DataError('%s: image %d of the JSON has no filename' % (json_path, i))
        rel = Path(im['filepath']) / fname if isinstance(im.get('filepath'), str) else Path(fname)
        if rel.is_absolute() or '..' in rel.parts:
            raise DataError('%s: image %d names a file outside the image root: %s' % (json_path, i, rel))
        sents = im.get('sentences')
        raws = [s.get('raw') for s in sents if isinstance(s, dict)] if isinstance(sents, list) else []
        raws = [r for r in raws if isinstance(r, str)]
        if len(raws) < CAPTIONS_PER_IMAGE:
            raise DataError('%s: image %s (split %r) has %d captions; VSE++ needs %d per image'
                            % (json_path, rel, wanted, len(raws), CAPTIONS_PER_IMAGE))
        paths.append(root / rel)
        names.append(str(rel))
        captions.extend(raws[:CAPTIONS_PER_IMAGE])
    if not names:
        raise DataError('%s has no images in split %r (splits present: %s)'
                        % (json_path, split, ', '.join(splits_seen) or 'none'))
    return CaptionedSplit(split, captions, names, paths=paths, source=str(json_path))


# --------------------------------------------------------------------------- precomputed

def precomp_split(folder: PathLike, split: str) -> CaptionedSplit:
    """``{split}_ims.npy`` and ``{split}_caps.txt`` of a precomputed-feature folder.

    One float row per image and five caption lines per image, in image order; a feature file
    with one row per caption (as some of VSE++'s were written) is read as every fifth row.
    """
    folder = Path(folder)
    ims_path, caps_path = folder / ('%s_ims.npy' % split), folder / ('%s_caps.txt' % split)
    for p in (ims_path, caps_path):
        if not p.is_file():
            present = sorted(q.name for q in folder.glob('*_ims.npy')) if folder.is_dir() else []
            raise DataError('%s does not exist (split %r of the precomputed-feature folder %s; '
                            'feature files there: %s)' % (p, split, folder, ', '.join(present) or 'none'))
    try:
        # allow_pickle=False: a feature file is numbers; an object array would run code.
        feats = np.load(str(ims_path), mmap_mode='r', allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError('cannot read the features %s: %s' % (ims_path, e)) from None
    if feats.ndim != 2 or feats.dtype.kind != 'f':
        raise DataError('%s holds a %s array of shape %s; expected float (images, feature_dim)'
                        % (ims_path, feats.dtype, feats.shape))
    try:
        lines = caps_path.read_text(encoding='utf-8').splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError('cannot read the captions %s: %s' % (caps_path, e)) from None
    captions = [l.strip() for l in lines]
    while captions and not captions[-1]:
        captions.pop()
    if not captions or len(feats) == 0:
        raise DataError('split %r of %s is empty (%d feature rows, %d captions)'
                        % (split, folder, len(feats), len(captions)))
    if len(feats) == len(captions) and len(captions) % CAPTIONS_PER_IMAGE == 0 \
            and len(feats) != len(captions) // CAPTIONS_PER_IMAGE:
        feats = feats[::CAPTIONS_PER_IMAGE]  # one row per caption: each image five times
    if len(captions) != CAPTIONS_PER_IMAGE * len(feats):
        raise DataError('%s has %d lines for the %d feature rows of %s; expected %d (five per image)'
                        % (caps_path, len(captions), len(feats), ims_path, CAPTIONS_PER_IMAGE * len(feats)))
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    if not np.isfinite(feats).all():
        bad = int(np.flatnonzero(~np.isfinite(feats).all(axis=1))[0])
        raise DataError('%s: feature row %d is not finite' % (ims_path, bad))
    names = ['%s[%d]' % (ims_path.name, i) for i in range(len(feats))]
    return CaptionedSplit(split, captions, names, features=feats, source=str(folder))


def load_split(split: str, karpathy: Optional[PathLike] = None, images_root: Optional[PathLike] = None,
               precomp: Optional[PathLike] = None, karpathy_images: Optional[list] = None) -> CaptionedSplit:
    """One split from whichever form is given (exactly one of ``karpathy`` with
    ``images_root``, or ``precomp``)."""
    if (karpathy is None) == (precomp is None):
        raise DataError('give either a Karpathy JSON with its image root, or a precomputed-feature folder')
    if precomp is not None:
        return precomp_split(precomp, split)
    if images_root is None:
        raise DataError('the Karpathy JSON %s needs the folder its images are in (--images)' % karpathy)
    return karpathy_split(karpathy, images_root, split, karpathy_images)
