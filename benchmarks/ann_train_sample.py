"""How the share of rows the IVF cells are trained on changes recall (vseimageencoder.index.ann).

    .venv/bin/python benchmarks/ann_train_sample.py                  # 200,000 rows, 512 cells
    .venv/bin/python benchmarks/ann_train_sample.py --per-cell 16 64 256

The same clustered mixture as benchmarks/ann_bench.py (rows / 100 centres, lognormal weights),
held in memory (no index folder); for each --per-cell value the cells are trained on that many
rows per cell and recall@10 against the exact scan is measured at 4, 8 and 16 cells probed.
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
    ap.add_argument('--cells', type=int, default=512)
    ap.add_argument('--queries', type=int, default=200)
    ap.add_argument('--per-cell', type=int, nargs='+', default=[16, 64, 256])
    args = ap.parse_args()
    from vseimageencoder.index import ann

    mix = Mixture(args.dim, max(10, args.rows // 100), seed=11)
    rng = np.random.default_rng(12)
    x = np.concatenate([mix.sample(min(50000, args.rows - s), rng) for s in range(0, args.rows, 50000)])
    q = mix.sample(args.queries, np.random.default_rng(13), spread=(1.0, 1.0))
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    print('Machine: %s. Rows %d x %d, %d cells, %d queries.' % (cpu_name(), args.rows, args.dim, args.cells,
                                                             args.queries))
    print()
    print('| rows per cell trained | share of rows | build s | recall@10, 4 / 8 / 16 cells probed |')
    print('|---|---|---|---|')
    for per in args.per_cell:
        ann.TRAIN_ROWS_PER_CELL = per
        t = time.perf_counter()
        index = ann.AnnIndex.build(x, np.arange(args.rows), nlist=args.cells)
        built = time.perf_counter() - t
        recalls = []
        for probe in (4, 8, 16):
            found = index.search(q, 10, nprobe=probe)[1]
            recalls.append(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))
        say('%d per cell: %s' % (per, recalls))
        print('| %d | %.1f%% | %.0f | %s |' % (per, 100.0 * min(1, per * args.cells / args.rows), built,
                                              ' / '.join('%.3f' % r for r in recalls)))


if __name__ == '__main__':
    main()
