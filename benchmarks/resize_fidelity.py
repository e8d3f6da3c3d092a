"""How far the fast transform's embeddings are from the faithful one's, and how much faster.

    .venv/bin/python benchmarks/resize_fidelity.py                      # resnet152 (about 2 min on 2 cores)
    .venv/bin/python benchmarks/resize_fidelity.py --models resnet152 resnet18 vgg19

Writes the generated photo set of ``tests/support/photos.py`` (FIDELITY_SET: 320x240 to 24 MP,
portrait and landscape, EXIF-rotated, progressive, 4:4:4 and 4:2:0 JPEG, PNG, grayscale) and
a checkpoint in the VSE++ release layout with random weights, then embeds every file with
``resize='exact'`` (full decode, bilinear short side 256, crop 224) and ``resize='fast'``
with the fp32 tower. Also the raw-pixel path: each decoded image as a uint8 batch of one
through ``transform_batch`` both ways. Prints a markdown table and the worst cosine, which
decides ``images.transform.DEFAULT_RESIZE`` (fast only if >= 0.999).

Random weights are not trained ones, and a deep random tower maps every image close to one
direction (the cosine between embeddings of *different* photos is printed: about 0.9995 for
ResNet-152), which makes raw cosines flatter than a trained tower's would be. So it also
prints the "centred" cosine: fast vs exact after subtracting the mean embedding of the set,
which measures the difference against the spread between images; and, for scale, the
cosine between each image's exact embedding and that of the same pixels re-encoded as JPEG
at quality 90. A trained tower may still be more or less sensitive than either.
"""
import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402


def _timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times) * 1000.0


def _cos(a, b):
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--models', nargs='+', default=['resnet152'])
    ap.add_argument('--repeats', type=int, default=3, help='timed transforms per image and mode (median)')
    ap.add_argument('--folder', help='write (or reuse) the photos here instead of a temporary folder')
    args = ap.parse_args()

    import torch
    from PIL import Image

    from benchmarks.bench import _machine
    from tests.support.photos import FIDELITY_SET, write_set
    from tests.support.vsepp_release import write_release_checkpoint
    from vseimageencoder.images import read, transform
    from vseimageencoder.release.checkpoint import load_tower
    from vseimageencoder.model.inference import InferenceTower

    started = time.perf_counter()

    def progress(what):
        print('resize_fidelity: %s (%.0f s so far)' % (what, time.perf_counter() - started),
              file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or os.path.join(tmp, 'photos'))
        progress('writing %d photos' % len(FIDELITY_SET))
        paths = [folder / name for name, *_ in FIDELITY_SET]
        if not all(p.exists() for p in paths):
            paths = write_set(folder, FIDELITY_SET)
        rows, xs = [], {'exact': [], 'fast': [], 'array-exact': [], 'array-fast': [], 'rejpeg': []}
        for n, (p, (name, w, h, opts)) in enumerate(zip(paths, FIDELITY_SET), 1):
            progress('[%d/%d] %s' % (n, len(FIDELITY_SET), name))
            exact, t_exact = _timed(lambda: transform.transform(p, resize='exact'), args.repeats)
            fast, t_fast = _timed(lambda: transform.transform(p, resize='fast'), args.repeats)
            pixels = np.asarray(read.read_image(p))
            a_exact = transform.transform_batch(pixels[None], channel_axis=-1, resize='exact')[0]
            a_fast = transform.transform_batch(pixels[None], channel_axis=-1, resize='fast')[0]
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, 'JPEG', quality=90)
            rejpeg = transform.transform(Image.open(buf), resize='exact')
            for k, v in (('exact', exact), ('fast', fast), ('array-exact', a_exact),
                         ('array-fast', a_fast), ('rejpeg', rejpeg)):
                xs[k].append(v)
            # Largest difference in the crop, in grey levels of the first channel's scale.
            levels = float(np.abs(exact - fast).max() * transform.IMAGENET_STD[0] * 255)
            rows.append([name, '%dx%d' % (w, h), p.stat().st_size / 1e6, t_exact, t_fast, levels])
        lines = ['Machine: %s. Date: %s.' % (_machine(), time.strftime('%Y-%m-%d')), '']
        worst = {}
        for cnn in args.models:
            progress('embedding with %s' % cnn)
            ckpt = os.path.join(tmp, cnn, 'model_best.pth.tar')
            write_release_checkpoint(ckpt, cnn, legacy=True, old_vgg_keys=cnn.startswith('vgg'), seed=1)
            tower, _ = load_tower(ckpt)
            model = InferenceTower(tower, 'fp32')
            emb = {k: model(torch.from_numpy(np.stack(v))).numpy() for k, v in xs.items()}
            mean = emb['exact'].mean(0)
            cos = [_cos(a, b) for a, b in zip(emb['exact'], emb['fast'])]
            centred = [_cos(a - mean, b - mean) for a, b in zip(emb['exact'], emb['fast'])]
            cos_arr = [_cos(a, b) for a, b in zip(emb['array-exact'], emb['array-fast'])]
            centred_arr = [_cos(a - mean, b - mean) for a, b in zip(emb['array-exact'], emb['array-fast'])]
            cos_jpeg = [_cos(a, b) for a, b in zip(emb['exact'], emb['rejpeg'])]
            centred_jpeg = [_cos(a - mean, b - mean) for a, b in zip(emb['exact'], emb['rejpeg'])]
            gram = emb['exact'] @ emb['exact'].T / np.outer(*[np.linalg.norm(emb['exact'], axis=1)] * 2)
            worst[cnn] = (min(cos), min(centred), min(cos_arr), min(centred_arr), min(cos_jpeg),
                          min(centred_jpeg), float(gram.min()))
            for r, c, cc, ca in zip(rows, cos, centred, cos_arr):
                r += [c, cc, ca]
        head = ('| image | stored size | MB | exact ms | fast ms | speed-up | max pixel diff (levels) | '
                + ' | '.join('%s cosine | %s centred cosine | %s cosine, uint8 array' % (m, m, m)
                             for m in args.models) + ' |')
        lines += [head, '|' + '---|' * (head.count('|') - 1)]
        for r in rows:
            cells = ' | '.join('%.7f | %.5f | %.7f' % tuple(r[6 + 3 * i:9 + 3 * i]) for i in range(len(args.models)))
            lines.append('| %s | %s | %.1f | %.0f | %.0f | %.1fx | %.1f | %s |'
                         % (r[0], r[1], r[2], r[3], r[4], r[3] / r[4], r[5], cells))
        lines.append('')
        for cnn, (wf, wfc, wa, wac, wj, wjc, cross) in worst.items():
            lines.append('%s (random weights): worst cosine fast vs exact %.7f on files (centred %.5f), '
                         '%.7f on uint8 arrays (centred %.5f). For scale: a JPEG re-encode at quality 90 '
                         '%.7f (centred %.5f); two different photos of the set as close as %.5f. '
                         'Fast as default (worst cosine >= 0.999): %s.'
                         % (cnn, wf, wfc, wa, wac, wj, wjc, cross, 'yes' if min(wf, wa) >= 0.999 else 'NO'))
        print('\n'.join(lines))
    progress('done')


if __name__ == '__main__':
    main()
