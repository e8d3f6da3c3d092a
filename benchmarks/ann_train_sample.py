"""How the number of IVF cells and the rows they are trained on change recall and query time
(vseimageencoder.index.ann), against the exact scan.

    .venv/bin/python benchmarks/ann_train_sample.py                        # 200,000 rows, 512 cells, 16/64/256 per cell
    .venv/bin/python benchmarks/ann_train_sample.py --rows 1000000 --configs 1024:256 2048:128 4096:64 --probes 8 16 32 64
    .venv/bin/python benchmarks/ann_train_sample.py --rows 50000 --configs 256:256 1024:64 --probes 8 16

The same clustered mixture as benchmarks/ann_bench.py (rows / 100 centres, lognormal weights,
the same seeds), held in memory (no index folder; 1M rows need about 9 GB). Each
``--configs`` entry ``CELLS:PER`` builds an :class:`AnnIndex` of ``CELLS`` cells trained on up
to ``PER`` rows per cell (the package's own build, faiss's BLAS kernels named as it does), then
searches the held-out queries one at a time with each ``--probes`` count: recall@10 against
the exact top-10, and the median time per query. Prints a markdown table.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.ann_bench import Mixture, cpu_name, say  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--rows', type=int, default=200000)
    ap.add_argument('--dim', type=int, default=1024)
    ap.add_argument('--queries', type=int, default=200)
    ap.add_argument('--configs', nargs='+', default=['512:16', '512:64', '512:256'],
                    help='CELLS:ROWS_PER_CELL_TRAINED entries (default: 512:16 512:64 512:256)')
    ap.add_argument('--probes', type=int, nargs='+', default=[4, 8, 16])
    args = ap.parse_args()
    from vseimageencoder.index import ann

    configs = []
    for c in args.configs:
        cells, per = c.split(':')
        configs.append((int(cells), int(per)))
    mix = Mixture(args.dim, max(10, args.rows // 100), seed=11)
    rng = np.random.default_rng(12)
    x = np.empty((args.rows, args.dim), np.float32)
    for s in range(0, args.rows, 50000):
        x[s:s + 50000] = mix.sample(min(50000, args.rows - s), rng)
    q = mix.sample(args.queries, np.random.default_rng(13), spread=(1.0, 1.0))
    truth = []
    for s in range(0, len(q), 20):
        truth.append(np.argsort(-(q[s:s + 20] @ x.T), axis=1)[:, :10])
    truth = np.concatenate(truth)
    say('data and exact top-10 ready')
    print('Machine: %s. Date: %s. Rows %d x %d, %d queries (one at a time).'
          % (cpu_name(), time.strftime('%Y-%m-%d'), args.rows, args.dim, args.queries))
    print()
    print('| cells | rows per cell trained | share of rows | build s | %s |'
          % ' | '.join('recall@10 / median ms, %d probed' % p for p in args.probes))
    print('|---|---|---|---|' + '---|' * len(args.probes))
    for cells, per in configs:
        ann.TRAIN_ROWS_PER_CELL = per
        t = time.perf_counter()
        index = ann.AnnIndex.build(x, np.arange(args.rows), nlist=cells)
        built = time.perf_counter() - t
        cols = []
        for probe in args.probes:
            found, lat = [], []
            for one in q:
                t = time.perf_counter()
                found.append(index.search(one[None], 10, nprobe=probe)[1][0])
                lat.append(time.perf_counter() - t)
            r = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
            cols.append('%.4f / %.2f' % (r, 1000 * np.median(lat)))
        say('%d cells, %d per cell: built in %.0f s; %s' % (cells, per, built, '; '.join(cols)))
        print('| %d | %d | %.1f%% | %.0f | %s |' % (cells, per, 100.0 * min(1, per * cells / args.rows), built,
                                                  ' | '.join(cols)))
        sys.stdout.flush()
        del index


if __name__ == '__main__':
    main()
