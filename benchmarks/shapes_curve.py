"""Held-out retrieval of a VSE++ model trained for a few minutes on the shapes data set.

    .venv/bin/python benchmarks/shapes_curve.py [--epochs 10] [--threads 1]

Writes the shapes data set (examples/shapes_dataset.py: 3,000 training, 500 validation and
1,000 test images, precomputed form) into a temporary folder, then for each loss (VSE++'s
hardest negatives, and VSE0's sum over all negatives, ``--sum-violation``):

    vseimageencoder train --precomp DATA --out RUN --epochs 0         # untrained, saved
    vseimageencoder train --precomp DATA --out RUN --epochs K --resume RUN   # K = 1 .. --epochs
    vseimageencoder evaluate --precomp DATA --split test --model-path RUN/checkpoint.pth.tar

with ``--embed-size 256 --word-dim 100 --lr 2e-3`` and the other options at the paper's
defaults. The test split is never seen in training. Prints a markdown row per loss and
epoch as it comes (test rsum and R@1 both ways against cumulative training time, which
includes each `train` run's start-up and per-epoch validation), and the machine line.
"""
import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'examples'))


def cpu_name() -> str:
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def _cli(argv):
    from vseimageencoder.cli import main
    status = main(argv)
    if status != 0:
        raise SystemExit('command failed (%d): vseimageencoder %s' % (status, ' '.join(argv)))


def _evaluate(data, run, out_json, threads):
    _cli(['evaluate', '--precomp', str(data), '--split', 'test', '--model-path',
          str(run / 'checkpoint.pth.tar'), '-o', str(out_json), '--threads', str(threads)])
    return json.loads(Path(out_json).read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--train', type=int, default=3000)
    p.add_argument('--losses', default='vse++,vse0')
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from shapes_dataset import generate

    print('| loss | epochs | training s (cumulative) | test rsum | R@1 image->text | R@1 text->image |')
    print('|---|---|---|---|---|---|')

    def row(loss, k, spent, r):  # printed as it comes: a long run cut short keeps its rows
        print('| %s | %d | %.0f | **%.1f** | %.1f | %.1f |' % (loss, k, spent, r['rsum'], r['i2t']['r1'],
                                                          r['t2i']['r1']), flush=True)

    with tempfile.TemporaryDirectory(prefix='shapes_curve.') as tmp:
        tmp = Path(tmp)
        data = generate(tmp / 'data', {'train': a.train, 'dev': 500, 'test': 1000}, size=64,
                        img_dim=1024, seed=0)['precomp']
        for loss in a.losses.split(','):
            run = tmp / loss
            common = ['train', '--precomp', str(data), '--out', str(run), '--embed-size', '256',
                      '--word-dim', '100', '--lr', '2e-3', '--threads', str(a.threads), '--log-step', '1000']
            if loss == 'vse0':
                common.append('--sum-violation')
            _cli(common + ['--epochs', '0'])
            row(loss, 0, 0.0, _evaluate(data, run, tmp / 'e.json', a.threads))
            spent = 0.0
            for k in range(1, a.epochs + 1):
                t0 = time.monotonic()
                _cli(common + ['--epochs', str(k), '--resume', str(run)])
                spent += time.monotonic() - t0
                row(loss, k, spent, _evaluate(data, run, tmp / 'e.json', a.threads))
    print('\n%s, %d threads, torch %s; 1,000 test images, 5,000 captions; chance rsum is about 3.'
          % (cpu_name(), a.threads, __import__('torch').__version__))
    return 0


if __name__ == '__main__':
    sys.exit(main())
