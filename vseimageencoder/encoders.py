"""The jina-free encoders every front end wraps, :class:`ImageEncoder` and :class:`TextEncoder`:
a released checkpoint's tower loaded once, checked input in, float32 numpy embeddings out.
"""
import logging
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from vseimageencoder.release.checkpoint import load_tower
from vseimageencoder.release.locate import DEFAULT_SEARCH_DIRS, resolve_checkpoint_path
from vseimageencoder.model.inference import InferenceTower, check_device
from vseimageencoder.model.precisions import check_precision  # noqa: F401  (public: the front ends use it)
from vseimageencoder.images.checks import check_feature_batch, check_image_batch, normalize_channel_axis
from vseimageencoder.images.transform import check_resize, DEFAULT_RESIZE, transform_batch

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


def check_fuse(fuse) -> Optional[bool]:
    """``fuse`` as the image encoders take it: True, False or None (auto); anything else
    (a string from a hand-written YAML, say) is refused rather than read as true."""
    if fuse is not None and not isinstance(fuse, bool):
        raise TypeError('fuse must be true, false or null (auto), got %r' % (fuse,))
    return fuse


class ImageEncoder:
    """VSE++ image embeddings from a released checkpoint, without jina.

    :param model_path: a checkpoint file or a folder holding ``model_best.pth.tar``; a
        relative path is tried against the working directory, then ``search_dirs``.
    :param channel_axis: the axis of the 3 colour channels in image batches (1 for
        ``(B, 3, H, W)``, -1 or 3 for ``(B, H, W, 3)``).
    :param precision: backbone arithmetic, ``fp32`` (faithful), ``bf16``, ``fp16`` or ``auto``.
    :param device: torch device the tower runs on, e.g. ``'cpu'`` or ``'cuda:0'``.
    :param resize: how uint8 batches are transformed: ``'fast'`` (the whole batch resized at
        once by torch's antialiased bilinear kernel, within one grey level of PIL's) or
        ``'exact'`` (PIL image by image, the faithful transform, on parallel threads).
    """

    def __init__(self, model_path: PathLike = 'pretrained', channel_axis: int = 1,
                 precision: str = 'fp32', device: str = 'cpu',
                 search_dirs: Sequence[PathLike] = DEFAULT_SEARCH_DIRS,
                 resize: str = DEFAULT_RESIZE):
        self.channel_axis = normalize_channel_axis(channel_axis)
        check_precision(precision)
        check_device(device)  # before the checkpoint is read: a missing GPU fails at once
        self.resize = check_resize(resize)
        self.checkpoint_path: Path = resolve_checkpoint_path(model_path, list(search_dirs))
        tower, self.options = load_tower(self.checkpoint_path)
        self.model = InferenceTower(tower, precision, device)
        self.device = self.model.device
        self.precision = self.model.precision

    @property
    def embed_size(self) -> int:
        return self.options.embed_size

    def require_backbone(self, purpose: str) -> None:
        """Raise ValueError naming the checkpoint and ``purpose`` (e.g. "indexing image files")
        when this is a precomputed-feature model, which has no CNN to run on pixels."""
        if self.options.precomputed:
            raise ValueError('%s is a precomputed-feature model (%s); %s needs a model with a CNN backbone'
                             % (self.checkpoint_path, self.options.data_name, purpose))

    def describe(self) -> str:
        return 'VSE++ image tower ready on %s: %s, %s, %d-d embeddings, from %s' % (
            self.device, self.options.cnn_type or 'precomputed features', self.precision,
            self.embed_size, self.checkpoint_path)

    def fuse(self, batch_size: int, fuse: Optional[bool] = None) -> bool:
        """Compile the backbone with oneDNN Graph fusion for forward passes of ``batch_size``
        images (:meth:`~vseimageencoder.model.inference.InferenceTower.fuse`: costs time once,
        CPU only; passes of other sizes still run, unfused, with the same results).

        :param fuse: None: only when the tower runs ``bf16`` or ``fp16`` (fp32 gains less and
            takes longer to compile); True: any precision; False: never.
        :return: whether the tower now runs fused (False as well where fusion is not possible
            or failed, which is logged).
        """
        if check_fuse(fuse) is None:
            fuse = self.model.fuses_by_default
        return fuse and self.model.fuse(batch_size)

    def check(self, data) -> np.ndarray:
        """Validate a batch and return it as ``(B, 3, H, W)`` (or ``(B, img_dim)`` features
        for ``*_precomp`` checkpoints), dtype kept. Raises TypeError / ValueError naming the
        shape or dtype at fault."""
        if self.options.precomputed:
            return check_feature_batch(data, self.options.img_dim)
        batch = check_image_batch(data, self.channel_axis)
        if batch.dtype != np.uint8 and batch.dtype.kind != 'f':
            raise TypeError('the image batch of shape %s has dtype %s; expected float images '
                            'normalised with the ImageNet mean/std, or uint8 pixels'
                            % (np.shape(data), batch.dtype))
        return batch

    def encode_checked(self, batch: np.ndarray) -> np.ndarray:
        """Embed a batch that :meth:`check` returned (or a slice of one)."""
        import torch

        if batch.shape[0] == 0:
            return np.zeros((0, self.embed_size), dtype=np.float32)
        if batch.dtype == np.uint8:
            batch = transform_batch(batch, channel_axis=1, resize=self.resize)
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if not x.flags.writeable:
            # A read-only array (a memory map opened 'r', a frozen array) would make torch warn
            # that writes are undefined; one copy of the batch is cheap next to the tower.
            x = x.copy()
        x = torch.from_numpy(x)
        try:
            out = self.model(x)
        except RuntimeError as e:
            raise ValueError('the %s backbone cannot encode a batch of shape %s: %s' % (
                self.options.cnn_type or 'projection', tuple(batch.shape),
                str(e).splitlines()[0])) from None
        return out.numpy()

    def encode(self, data, batch_size: Optional[int] = None) -> np.ndarray:
        """Embed a batch of images.

        :param data: a 4-d batch with the 3 colour channels at ``channel_axis``: uint8 raw
            RGB pixels of any size (the VSE++ evaluation transform is applied here), or float
            images already transformed (used as given). ``(B, img_dim)`` features for
            ``*_precomp`` checkpoints.
        :param batch_size: forward passes of at most this many images (None: one pass).
        :return: float32 ``(B, embed_size)``, rows of unit L2 norm (unless the checkpoint says
            ``no_imgnorm``); ``(0, embed_size)`` for an empty batch.
        """
        batch = self.check(data)
        return _in_slices(self.encode_checked, batch, batch_size, self.embed_size)


def _in_slices(fn, batch, batch_size: Optional[int], width: int) -> np.ndarray:
    n = len(batch)
    if not batch_size or n <= batch_size:
        return fn(batch) if n else np.zeros((0, width), np.float32)
    return np.concatenate([fn(batch[i:i + batch_size]) for i in range(0, n, batch_size)])


class TextEncoder:
    """VSE++ caption embeddings from a released checkpoint and its vocabulary, without jina.

    :param model_path: a checkpoint file or a folder holding ``model_best.pth.tar``, resolved
        as for :class:`ImageEncoder`; its second state dict is the text tower.
    :param vocab_path: the vocabulary pickle, or a folder holding ``<data_name>_vocab.pkl``;
        None: ``<data_name>_vocab.pkl`` beside the checkpoint (where ``vseimageencoder
        download`` puts it). Relative paths resolve as ``model_path`` does.
    :param precision: arithmetic of the embedding table and GRU (``fp32`` faithful, ``bf16``,
        ``fp16``, ``auto``); outputs are float32 and normalised either way.
    :param device: torch device the tower runs on.
    """

    def __init__(self, model_path: PathLike = 'pretrained', vocab_path: Optional[PathLike] = None,
                 precision: str = 'fp32', device: str = 'cpu',
                 search_dirs: Sequence[PathLike] = DEFAULT_SEARCH_DIRS):
        import torch

        from vseimageencoder.release.checkpoint import load_text_tower
        from vseimageencoder.model.inference import DTYPES, resolve_precision
        from vseimageencoder.release.vocab import NotAVocabularyError, read_vocabulary, resolve_vocabulary_path

        check_precision(precision)
        self.device = check_device(device)  # before anything is read: a missing GPU fails at once
        self.checkpoint_path: Path = resolve_checkpoint_path(model_path, list(search_dirs))
        tower, self.options = load_text_tower(self.checkpoint_path)
        self.vocab_path: Path = resolve_vocabulary_path(vocab_path, self.checkpoint_path,
                                                        self.options.data_name, list(search_dirs))
        self.vocab = read_vocabulary(self.vocab_path)  # checked against its download record
        if len(self.vocab) != self.options.vocab_size:
            raise NotAVocabularyError(
                '%s has %d words, but the text tower of %s has an embedding table of %d rows: '
                'not the vocabulary this model was trained with (data_name %r)'
                % (self.vocab_path, len(self.vocab), self.checkpoint_path, self.options.vocab_size,
                   self.options.data_name))
        self.precision = resolve_precision(precision, self.device)
        self.model = tower.to(self.device, dtype=DTYPES[self.precision])
        self._torch = torch

    @property
    def embed_size(self) -> int:
        return self.options.embed_size

    def describe(self) -> str:
        return ('VSE++ text tower ready on %s: %d-word vocabulary %s, %d GRU layer(s), %s, %d-d '
                'embeddings, from %s' % (self.device, len(self.vocab), self.vocab_path,
                                         self.options.num_layers, self.precision, self.embed_size,
                                         self.checkpoint_path))

    def check(self, texts) -> list:
        """Captions as a list of str (from a list, tuple or 1-d array); TypeError names the
        first item that is not a str."""
        from vseimageencoder.release.vocab import check_texts
        return check_texts(texts)

    def word_ids(self, caption: str) -> list:
        """``<start>``, the caption's word ids as VSE++ tokenised it, ``<end>``."""
        return self.vocab.ids(caption)

    def encode_checked(self, captions: Sequence[str]) -> np.ndarray:
        """Embed captions that :meth:`check` returned (or a slice of them)."""
        from vseimageencoder.model.text import pad_ids

        if len(captions) == 0:
            return np.zeros((0, self.embed_size), dtype=np.float32)
        ids, lengths = pad_ids([self.word_ids(c) for c in captions])
        with self._torch.inference_mode():
            out = self.model(ids.to(self.device), lengths)
        return out.float().cpu().numpy()

    def encode(self, texts, batch_size: Optional[int] = None) -> np.ndarray:
        """Embed a batch of captions.

        :param texts: a list/tuple or 1-d array of str; ``''`` encodes as ``<start> <end>``.
        :param batch_size: forward passes of at most this many captions (None: one pass).
        :return: float32 ``(B, embed_size)``, rows of unit L2 norm (non-negative when the
            checkpoint says ``use_abs``); a caption gives the same row alone or in any batch.
        """
        captions = self.check(texts)
        return _in_slices(self.encode_checked, captions, batch_size, self.embed_size)
