"""A captioned data set whose captions describe its images: rendered shapes, colours, sizes
and positions, in both of VSE++'s data forms.

    .venv/bin/python examples/shapes_dataset.py OUT [--train 6000 --dev 500 --test 1000]

writes into OUT:

* ``images/NNNNNN.png`` (``--size`` pixels square) and ``dataset_shapes.json``, a
  Karpathy-split JSON (``images[]`` with ``filename``, ``filepath``, ``split``,
  ``sentences[].raw``) for ``--karpathy OUT/dataset_shapes.json --images OUT``;
* ``precomp/{train,dev,test}_ims.npy`` and ``{split}_caps.txt`` for ``--precomp OUT/precomp``.

Each image holds one or two shapes (circle, square, triangle, diamond) of one of seven
colours, small or large, in distinct cells of a 3 x 3 grid. Its five captions are drawn from
those attributes with varied wording and detail (some name every attribute, some only
colours and shapes, some one shape), so retrieval must read colour, shape, size and
position from the pixels. The precomputed "features" stand in for a CNN: a fixed random
ReLU layer (seeded) over the image's 16 x 16 RGB thumbnail less its background colour, ``--img-dim`` wide. Everything is
a function of ``--seed``: the same command writes the same files.
"""
import argparse
import json
import logging
import os
import random
import re
import sys
from pathlib import Path

import numpy as np

logger = logging.getLogger('shapes_dataset')

SHAPES = ('circle', 'square', 'triangle', 'diamond')
SHAPE_WORDS = {'circle': ('circle', 'disc', 'round shape'), 'square': ('square', 'box', 'square'),
               'triangle': ('triangle', 'triangle', 'triangular shape'),
               'diamond': ('diamond', 'rhombus', 'diamond')}
COLOURS = {'red': (220, 30, 30), 'green': (30, 170, 40), 'blue': (30, 60, 220),
           'yellow': (235, 210, 20), 'purple': (140, 40, 170), 'orange': (245, 130, 20),
           'black': (20, 20, 20)}
#: 3 x 3 grid cells (column, row) and how captions name them.
POSITIONS = {(0, 0): 'top left', (1, 0): 'top', (2, 0): 'top right', (0, 1): 'left',
             (1, 1): 'middle', (2, 1): 'right', (0, 2): 'bottom left', (1, 2): 'bottom',
             (2, 2): 'bottom right'}
SIZES = ('small', 'large')
SPLITS = ('train', 'dev', 'test')
THUMB = 16


def random_scene(rng: random.Random) -> list:
    """One or two objects: dicts of shape, colour, size and a distinct grid cell."""
    cells = rng.sample(sorted(POSITIONS), 2)
    n = 1 if rng.random() < 0.3 else 2
    return [{'shape': rng.choice(SHAPES), 'colour': rng.choice(sorted(COLOURS)),
             'size': rng.choice(SIZES), 'cell': cells[i]} for i in range(n)]


def render(scene: list, size: int, rng: random.Random):
    """The scene as an RGB PIL image on a light background with a little jitter."""
    from PIL import Image, ImageDraw

    grey = rng.randint(225, 250)
    img = Image.new('RGB', (size, size), (grey, grey, grey))
    draw = ImageDraw.Draw(img)
    cell = size / 3.0
    for obj in scene:
        cx = (obj['cell'][0] + 0.5) * cell + rng.uniform(-0.08, 0.08) * cell
        cy = (obj['cell'][1] + 0.5) * cell + rng.uniform(-0.08, 0.08) * cell
        r = cell * (0.42 if obj['size'] == 'large' else 0.22)
        colour = tuple(int(np.clip(c + rng.randint(-15, 15), 0, 255)) for c in COLOURS[obj['colour']])
        if obj['shape'] == 'circle':
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        elif obj['shape'] == 'square':
            draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
        elif obj['shape'] == 'triangle':
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=colour)
        else:
            draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    return img


def _noun(obj, rng):
    return rng.choice(SHAPE_WORDS[obj['shape']])


def _where(obj, rng):
    pos = POSITIONS[obj['cell']]
    return rng.choice(('in the %s' % pos, 'at the %s' % pos, 'on the %s' % pos
                       if pos in ('left', 'right') else 'in the %s' % pos))


def captions_for(scene: list, rng: random.Random) -> list:
    """Five captions, each true of the scene, at varied detail."""
    a = scene[0]
    b = scene[1] if len(scene) > 1 else None

    def full(o):
        return 'a %s %s %s %s' % (o['size'], o['colour'], _noun(o, rng), _where(o, rng))

    def plain(o):
        return 'a %s %s' % (o['colour'], _noun(o, rng))

    if b is None:
        forms = [
            lambda: full(a),
            lambda: 'a single %s %s on a grey background' % (a['colour'], _noun(a, rng)),
            lambda: 'one %s shape %s' % (a['size'], _where(a, rng)),
            lambda: 'there is only %s %s' % (plain(a), _where(a, rng)),
            lambda: 'a picture of %s' % plain(a),
            lambda: 'the %s %s is %s' % (a['colour'], _noun(a, rng), a['size']),
        ]
    else:
        forms = [
            lambda: '%s and %s' % (full(a), full(b)),
            lambda: '%s and %s' % (plain(b), plain(a)),
            lambda: 'there is %s %s next to %s' % (plain(a), _where(a, rng), plain(b)),
            lambda: 'two shapes : a %s one and a %s one' % (a['colour'], b['colour']),
            lambda: '%s %s and a %s %s' % (plain(b), _where(b, rng), a['size'], _noun(a, rng)),
            lambda: 'a %s %s beside a %s %s' % (a['size'], _noun(a, rng), b['size'], _noun(b, rng)),
        ]
    picked = rng.sample(range(len(forms)), 5)
    return [re.sub(r'\ba (?=[aeiou])', 'an ', forms[i]()) for i in picked]


def features(img, proj: np.ndarray) -> np.ndarray:
    """The stand-in CNN feature: ReLU of a fixed projection of the 16 x 16 thumbnail."""
    from PIL import Image

    thumb = np.asarray(img.resize((THUMB, THUMB), Image.BILINEAR), dtype=np.float32) / 255.0
    # Relative to the background (the median colour), so an empty area gives no activation,
    # as a CNN's high-level features ignore flat regions.
    x = (thumb - np.median(thumb.reshape(-1, 3), axis=0)).reshape(-1)
    return np.maximum(x @ proj, 0.0).astype(np.float32)


def generate(out, counts=None, size: int = 64, img_dim: int = 1024, seed: int = 0) -> dict:
    """Write both forms into ``out``; returns ``{'json', 'images', 'precomp'}`` paths."""
    counts = dict(counts or {'train': 6000, 'dev': 500, 'test': 1000})
    out = Path(out)
    img_dir = out / 'images'
    img_dir.mkdir(parents=True, exist_ok=True)
    (out / 'precomp').mkdir(exist_ok=True)
    rng = random.Random(seed)
    proj = np.random.RandomState(seed).randn(THUMB * THUMB * 3, img_dim).astype(np.float32)
    proj /= np.sqrt(THUMB * THUMB * 3 / 12.0)
    entries, imgid = [], 0
    for split in SPLITS:
        feats, caps = [], []
        for _ in range(counts.get(split, 0)):
            scene = random_scene(rng)
            img = render(scene, size, rng)
            name = '%06d.png' % imgid
            img.save(str(img_dir / name))
            sents = captions_for(scene, rng)
            entries.append({'imgid': imgid, 'filepath': 'images', 'filename': name, 'split': split,
                            'sentences': [{'raw': s, 'tokens': s.split()} for s in sents]})
            feats.append(features(img, proj))
            caps.extend(sents)
            imgid += 1
        if feats:
            np.save(str(out / 'precomp' / ('%s_ims.npy' % split)), np.stack(feats))
            (out / 'precomp' / ('%s_caps.txt' % split)).write_text('\n'.join(caps) + '\n', encoding='utf-8')
    json_path = out / 'dataset_shapes.json'
    json_path.write_text(json.dumps({'dataset': 'shapes', 'images': entries}), encoding='utf-8')
    logger.info('wrote %d images, %s, and precomputed features in %s', imgid, json_path, out / 'precomp')
    return {'json': json_path, 'images': out, 'precomp': out / 'precomp'}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('out', help='folder to write into')
    p.add_argument('--train', type=int, default=6000)
    p.add_argument('--dev', type=int, default=500)
    p.add_argument('--test', type=int, default=1000)
    p.add_argument('--size', type=int, default=64, help='image side in pixels (default: 64)')
    p.add_argument('--img-dim', type=int, default=1024, help='precomputed feature width (default: 1024)')
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s', stream=sys.stderr)
    generate(a.out, {'train': a.train, 'dev': a.dev, 'test': a.test}, a.size, a.img_dim, a.seed)
    return 0


if __name__ == '__main__':
    sys.exit(main())
