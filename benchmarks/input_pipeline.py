"""Real photos through the ``encode`` path, against the tower alone, in the same run.

    .venv/bin/python benchmarks/input_pipeline.py            # 16 x 12 MP and 16 x 1 MP JPEGs, ResNet-152, fp32 and auto
    .venv/bin/python benchmarks/input_pipeline.py --n 32 --batch-size 8 --precisions auto

Generated photos (``tests/photos.py``: 4000x3000 and 1200x900 JPEGs at quality 90, a few MB
and a few hundred KB, like a phone's) and a ResNet-152 checkpoint in the VSE++ release
layout with random weights are written to a temporary folder. For each precision the tower
is prepared once; then

- **tower alone**: images/s of the prepared tower on already-transformed float batches of
  the same batch size (best of a run before and one after the end-to-end runs);
- **end to end**: images/s of ``cli.write_embeddings`` (what ``vseimageencoder encode``
  runs after loading the model: read, transform, tower, rows streamed to a .npy) for
  ``exact`` / ``fast`` resize, reading on the main thread (``--readers 0``, which with
  ``exact`` is how ``encode`` worked before) or on reader threads (``--readers`` default);
- **stages**: per-image decode and resize(+crop+normalise) time on one thread, for both
  resize modes;
- **uint8 path of encode()**: ``transform_batch`` on decoded pixel batches, PIL image by
  image on one thread (as before), PIL on parallel threads (``exact``), torch batched
  (``fast``).

Each end-to-end and tower-alone figure is the best of ``--repeats`` interleaved runs: the
machine this was written on is shared, and the best run is the least disturbed one.

A run of 16 images pays for filling the pipeline once (the first batch is read before the
tower can start); the ratio for long runs is higher. Prints markdown tables.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

SETS = {'12 MP': (4000, 3000), '1 MP': (1200, 900)}


def _write_photos(folder: Path, n: int, size, distinct: int = 8):
    """``n`` JPEG files; at most ``distinct`` different photos (generating 12 MP content costs
    about a second each), the rest copies under other names."""
    from tests.photos import write_photo

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / ('%03d.jpg' % i)
        if i < distinct:
            write_photo(p, size[0], size[1], seed=100 + i)
        else:
            shutil.copyfile(str(paths[i % distinct]), str(p))
        paths.append(p)
    return paths


def _tower_alone(model, n, batch_size):
    import torch

    x = torch.from_numpy(np.random.RandomState(0).randn(batch_size, 3, 224, 224).astype(np.float32))
    model(x)  # warm-up
    done, t = 0, time.perf_counter()
    while done < n:
        model(x)
        done += batch_size
    return done / (time.perf_counter() - t)


def _end_to_end(model, paths, out, batch_size, resize, readers):
    from vseimageencoder.cli import write_embeddings

    t = time.perf_counter()
    skipped = write_embeddings(model, 1024, paths, out, batch_size, False, resize, readers)
    elapsed = time.perf_counter() - t
    assert skipped == 0 and np.load(str(out), mmap_mode='r').shape[0] == len(paths)
    return len(paths) / elapsed


def _stages(paths, resize):
    """Median ms per image of decoding and of resize + crop + normalise, on one thread."""
    from vseimageencoder import preprocess as pp

    dec, res = [], []
    for p in paths:
        t0 = time.perf_counter()
        if resize == 'fast':
            img, *geometry = pp._read(p, pp.RESIZE * pp.FAST_MARGIN)
        else:
            img = pp.read_image(p)
        t1 = time.perf_counter()
        if resize == 'fast':
            pp.normalize_pixels(np.asarray(pp._fast_resize_crop(img, *geometry)))
        else:
            pp.normalize_pixels(np.asarray(pp._exact_resize_crop(img)))
        t2 = time.perf_counter()
        dec.append(t1 - t0)
        res.append(t2 - t1)
    return float(np.median(dec)) * 1e3, float(np.median(res)) * 1e3


def _uint8_path(paths, count):
    from vseimageencoder import preprocess as pp

    pixels = np.stack([np.asarray(pp.read_image(p)) for p in paths[:count]])
    rows = []
    for label, kw in (('PIL, one image at a time, 1 thread (before)', dict(resize='exact', workers=1)),
                      ('exact: PIL on %d threads' % min(count, os.cpu_count() or 1), dict(resize='exact')),
                      ('fast: torch, whole batch', dict(resize='fast'))):
        pp.transform_batch(pixels[:1], channel_axis=-1, **kw)  # warm-up
        t = time.perf_counter()
        pp.transform_batch(pixels, channel_axis=-1, **kw)
        rows.append((label, (time.perf_counter() - t) / count * 1e3))
    return pixels.shape[1:3], rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n', type=int, default=16, help='images per set (default: 16)')
    ap.add_argument('--batch-size', type=int, default=4, help='encode batch size (default: 4)')
    ap.add_argument('--precisions', nargs='+', default=['fp32', 'auto'])
    ap.add_argument('--cnn', default='resnet152')
    ap.add_argument('--sets', nargs='+', default=list(SETS), choices=list(SETS))
    ap.add_argument('--more-readers', nargs='*', type=int, default=[],
                    help='also run fast with these reader counts (how it scales)')
    ap.add_argument('--repeats', type=int, default=2,
                    help='runs of each measurement; the best counts (the machine is shared)')
    args = ap.parse_args()

    from benchmarks.bench import _machine
    from tests.vsepp_release import write_release_checkpoint
    from vseimageencoder.checkpoint import load_tower
    from vseimageencoder.inference import InferenceTower
    from vseimageencoder.reader import default_readers

    logging_off()
    readers = default_readers()
    lines = ['Machine: %s. Date: %s. %s random weights, batch size %d, %d images per set, '
             'default readers here: %d.' % (_machine(), time.strftime('%Y-%m-%d'), args.cnn,
                                             args.batch_size, args.n, readers), '']
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = tmp / 'model_best.pth.tar'
        write_release_checkpoint(ckpt, args.cnn, legacy=True, seed=1)
        photos = {name: _write_photos(tmp / name.replace(' ', ''), args.n, SETS[name]) for name in args.sets}
        configs = [('exact', 0, 'exact, main thread (before)'), ('exact', readers, 'exact, %d reader(s)' % readers),
                   ('fast', 0, 'fast, main thread'), ('fast', readers, 'fast, %d reader(s) (default)' % readers)]
        configs += [('fast', k, 'fast, %d readers' % k) for k in args.more_readers if k != readers]
        head = '| precision | photos | tower alone img/s | ' + ' | '.join('%s img/s (x tower)' % c[2] for c in configs) + ' |'
        lines += [head, '|' + '---|' * (head.count('|') - 1)]
        for prec in args.precisions:
            tower, _ = load_tower(str(ckpt))
            model = InferenceTower(tower, prec)
            label = prec if prec != 'auto' else 'auto (→ %s)' % model.precision
            for name in args.sets:
                alone = _tower_alone(model, args.n, args.batch_size)
                e2e = [0.0] * len(configs)
                for _ in range(args.repeats):  # interleaved, so drifting load hits all alike
                    e2e = [max(v, _end_to_end(model, photos[name], tmp / 'out.npy', args.batch_size, r, k))
                           for v, (r, k, _) in zip(e2e, configs)]
                    alone = max(alone, _tower_alone(model, args.n, args.batch_size))
                lines.append('| %s | %s | %.2f | %s |' % (label, name, alone, ' | '.join(
                    '%.2f (%.2fx)' % (v, v / alone) for v in e2e)))
                print(lines[-1], file=sys.stderr)
            del model, tower
        lines += ['', '| photos | resize | decode ms/img | resize+crop+normalise ms/img | total ms/img |',
                  '|---|---|---|---|---|']
        for name in args.sets:
            for resize in ('exact', 'fast'):
                d, r = _stages(photos[name], resize)
                lines.append('| %s | %s | %.1f | %.1f | %.1f |' % (name, resize, d, r, d + r))
        lines += ['', '| uint8 batch (encode() on raw pixels) | transform | ms/img |', '|---|---|---|']
        for name, count in (('1 MP', args.n), ('12 MP', min(args.n, 4))):
            if name not in photos:
                continue
            shape, rows = _uint8_path(photos[name], count)
            for label, ms in rows:
                lines.append('| %d x %dx%d | %s | %.1f |' % (count, shape[1], shape[0], label, ms))
    print('\n'.join(lines))


def logging_off():
    import logging
    logging.getLogger('vseimageencoder').setLevel(logging.ERROR)


if __name__ == '__main__':
    main()
