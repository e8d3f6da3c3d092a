"""Approximate search on a large index, next to the exact scan in the same run.

    .venv/bin/python benchmarks/ann_bench.py                 # 1,000,000 rows of 1024-d
    .venv/bin/python benchmarks/ann_bench.py --rows 200000   # a quicker look

What it does, in a temporary folder (removed at the end unless --keep):

1. writes a random-weight checkpoint in the VSE++ release layout (resnet18, 1024-d) for
   the provenance, and ``EMB.npy`` + ``EMB.files.txt`` holding ``--rows`` clustered synthetic
   unit vectors (``rows / 100`` random centres with lognormal weights; each row is its centre
   plus Gaussian noise of norm 0.5-1.5 times the centre's, normalised), as ``encode`` leaves them;
2. imports them through the real index: ``vseimageencoder index DIR --from EMB.npy
   --model-path CKPT`` (a child process; the approximate index is built by it, as the
   store does above 50,000 rows) and reports its time and peak resident memory;
3. opens the index (``open_index``) and searches ``--queries`` held-out vectors from the same
   mixture through ``Index.search_ids``: exact (``exact=True``, the full scan) and approximate
   (``exact=False``), one query at a time; recall@10 is the overlap of the two top-10 lists;
4. adds 1,000 new rows with the same command (``--from ADD.npy``) and reports the time, the
   bytes the approximate index wrote for it and the search after it.

Progress lines go to stderr; the table (markdown) goes to stdout.
"""
import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def say(msg):
    sys.stderr.write('[ann_bench %s] %s\n' % (time.strftime('%H:%M:%S'), msg))
    sys.stderr.flush()


def cpu_name():
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def rss_mb(field='RssAnon'):
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'):
            return int(line.split()[1]) / 1024
    return float('nan')


class Mixture:
    """Clustered unit vectors: ``clusters`` random unit centres with lognormal weights."""

    def __init__(self, dim, clusters, seed):
        rng = np.random.default_rng(seed)
        c = rng.standard_normal((clusters, dim)).astype(np.float32)
        self.centres = c / np.linalg.norm(c, axis=1, keepdims=True)
        w = rng.lognormal(0, 1, clusters)
        self.p = w / w.sum()
        self.dim = dim

    def sample(self, n, rng, spread=(0.5, 1.5)):
        lab = rng.choice(len(self.centres), size=n, p=self.p)
        s = rng.uniform(spread[0], spread[1], size=(n, 1)).astype(np.float32) / np.sqrt(self.dim)
        x = self.centres[lab] + s * rng.standard_normal((n, self.dim), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_pair(path, mix, n, rng, prefix):
    """``path`` (.npy) and its checked file list, as ``encode`` writes them (PairWriter)."""
    from vseimageencoder.index.npy_pair import PairWriter
    writer = PairWriter(path, mix.dim)
    chunk = 50000
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        writer.write(mix.sample(m, rng), ['synthetic/%s%07d.jpg' % (prefix, i) for i in range(start, start + m)])
        if start // chunk % 5 == 0:
            say('writing %s: %d / %d rows' % (path.name, start + m, n))
    writer.commit()


def run_index(tmp, npy, ckpt, index_dir):
    """``vseimageencoder index DIR --from NPY`` in a child; relays its log lines as progress."""
    cmd = [sys.executable, '-m', 'vseimageencoder', 'index', str(index_dir), '--from', str(npy),
           '--model-path', str(ckpt), '--json', '--no-progress']
    say('running: %s' % ' '.join(cmd))
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(ROOT),
                         universal_newlines=True)
    built = None
    done = threading.Event()

    def heartbeat():
        # The import logs little while it works: say how far the committed rows have got.
        while not done.wait(30):
            rows = sum(f.stat().st_size for f in Path(index_dir).glob('vectors.*.f32')) // (4 * DIM[0])
            say('  ... %.0f s, %d rows written to the index so far, load average %.1f'
                % (time.perf_counter() - t, rows, os.getloadavg()[0]))

    threading.Thread(target=heartbeat, daemon=True).start()
    for line in p.stderr:
        line = line.rstrip()
        say('  index: %s' % line)
        m = re.search(r'approximate index (?:of \d+ rows built|updated \(.*\)) in ([\d.]+) s', line)
        if m:
            built = float(m.group(1))
    out = p.stdout.read()
    rc = p.wait()
    done.set()
    elapsed = time.perf_counter() - t
    if rc != 0:
        raise SystemExit('vseimageencoder index exited %d' % rc)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return elapsed, json.loads(out.strip().splitlines()[-1]), built, peak


DIM = [1024]  # set by main; the heartbeat reads it


def dir_bytes(d):
    return sum(f.stat().st_size for f in Path(d).rglob('*') if f.is_file())


def timed_each(fn, queries):
    lat = []
    out = []
    for q in queries:
        t = time.perf_counter()
        out.append(fn(q[None]))
        lat.append(time.perf_counter() - t)
    return np.array(lat) * 1000, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--rows', type=int, default=1000000)
    ap.add_argument('--dim', type=int, default=1024)
    ap.add_argument('--queries', type=int, default=200)
    ap.add_argument('--scan-queries', type=int, default=10, help='single queries timed on the exact scan')
    ap.add_argument('--add', type=int, default=1000)
    ap.add_argument('--tmp', default=None, help='folder for the data (default: a new temporary one)')
    ap.add_argument('--keep', action='store_true', help='keep the data folder (for --reuse)')
    ap.add_argument('--reuse', metavar='DIR',
                    help='a folder kept by --keep: skip writing and importing the rows, measure the '
                         'searches and the add of its add.npy again (its index gets those rows)')
    args = ap.parse_args()
    t_all = time.perf_counter()
    DIM[0] = args.dim

    tmp = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix='ann_bench.', dir=args.tmp))
    say('data under %s' % tmp)
    try:
        ckpt = tmp / 'ckpt' / 'model_best.pth.tar'
        mix = Mixture(args.dim, max(10, args.rows // 100), seed=11)
        # Queries from their own generator: the same ones whether the rows are written or reused.
        queries = mix.sample(args.queries, np.random.default_rng(13), spread=(1.0, 1.0))
        rng = np.random.default_rng(12)
        emb, add = tmp / 'emb.npy', tmp / 'add.npy'
        index_dir = tmp / 'index'
        if args.reuse:
            import_s = counts = build_s = import_peak = None
        else:
            from tests.support.vsepp_release import write_release_checkpoint
            write_release_checkpoint(ckpt, 'resnet18', embed_size=args.dim, seed=1)
            t = time.perf_counter()
            write_pair(emb, mix, args.rows, rng, 'a')
            write_pair(add, mix, args.add, rng, 'b')
            say('synthetic data written in %.0f s' % (time.perf_counter() - t))
            import_s, counts, build_s, import_peak = run_index(tmp, emb, ckpt, index_dir)
            say('imported %s in %.0f s (ANN build %s s), child peak RSS %.0f MB'
                % (counts, import_s, build_s, import_peak))
        ann_disk = dir_bytes(index_dir / 'ann')

        from vseimageencoder.index import open_index
        from vseimageencoder.index.ann_store import ann_for
        t = time.perf_counter()
        ix = open_index(index_dir)
        open_s = time.perf_counter() - t
        rss_view = rss_mb()
        t = time.perf_counter()
        ann = ann_for(ix)
        load_s = time.perf_counter() - t
        rss_ann = rss_mb()
        say('opened the index in %.1f s, loaded its ANN in %.1f s (%d cells, nprobe %d); RSS %.0f MB'
            % (open_s, load_s, ann.nlist, ann.nprobe, rss_ann))

        say('exact top-10 of %d queries (batched scan, ground truth)' % len(queries))
        truth = []
        for start in range(0, len(queries), 20):
            truth += [[i for _, i in h] for h in ix.search_ids(queries[start:start + 20], 10, exact=True)]
        say('timing %d single-query exact scans' % args.scan_queries)
        scan_ms, _ = timed_each(lambda q: ix.search_ids(q, 10, exact=True), queries[:args.scan_queries])
        say('timing %d single-query approximate searches' % len(queries))
        ann_ms, found = timed_each(lambda q: ix.search_ids(q, 10, exact=False), queries)
        load_avg = os.getloadavg()[0]
        found = [[i for _, i in r[0]] for r in found]
        recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))

        sweep = []
        for probe in sorted({max(1, ann.nprobe // 2), ann.nprobe, ann.nprobe * 2}):
            ms, res = timed_each(lambda q: ann.search(q, 10, nprobe=probe), queries)
            r = float(np.mean([len(set(x[1][0]) & set(t)) / 10 for x, t in zip(res, truth)]))
            sweep.append((probe, r, float(np.median(ms)), float(np.percentile(ms, 95))))
            say('nprobe %d: recall@10 %.4f, median %.2f ms' % (probe, r, np.median(ms)))

        if not (index_dir / 'ann').is_dir():
            raise SystemExit('no approximate index was built: give --rows of at least 50000 (the threshold)')
        before = {p.name: p.stat().st_size for p in (index_dir / 'ann').iterdir()}
        add_s, add_counts, ann_add_s, _ = run_index(tmp, add, ckpt, index_dir)
        after = {p.name: p.stat().st_size for p in (index_dir / 'ann').iterdir()}
        written = sum(dir_bytes(index_dir / 'ann' / n) if (index_dir / 'ann' / n).is_dir() else s
                      for n, s in after.items() if n not in before or n == 'manifest.json')
        say('added %s in %.1f s; the ANN wrote %.1f MB (it holds %.0f MB)'
            % (add_counts, add_s, written / 1e6, dir_bytes(index_dir / 'ann') / 1e6))
        t = time.perf_counter()
        ix.refresh()
        hits = ix.search_ids(mix.sample(1, rng), 10, exact=False)
        refresh_s = time.perf_counter() - t
        assert len(hits[0]) == 10
        added_q = np.load(str(add), mmap_mode='r')[:50]
        ok = sum('synthetic/b' in ix.file(h[0][1]) for h in ix.search_ids(np.asarray(added_q), 1, exact=False))
        total_s = time.perf_counter() - t_all

        scan_med, ann_med = float(np.median(scan_ms)), float(np.median(ann_ms))
        print('Machine: %s, %d cores (1-minute load average %.1f while the queries ran). Date: %s. '
              'Rows %d x %d float32; %d queries; faiss IVF-Flat, %d cells, nprobe %d.'
              % (cpu_name(), os.cpu_count(), load_avg, time.strftime('%Y-%m-%d'), args.rows, args.dim,
                 len(queries), ann.nlist, ann.nprobe))
        print()
        print('| measure | value |')
        print('|---|---|')
        if import_s is not None:
            print('| import (`index --from`, %d rows, incl. ANN build) | %.0f s |' % (args.rows, import_s))
            print('| ANN build inside the import (train + add) | %s s |' % ('%.0f' % build_s if build_s else '?'))
            print('| import peak RSS (child; counts the pages of the memory-mapped files it read) | %.0f MB |'
                  % import_peak)
        print('| ANN on disk | %.0f MB |' % (ann_disk / 1e6))
        print('| open_index (read-only view) | %.1f s, anonymous RSS %.0f MB |' % (open_s, rss_view))
        print('| load ANN in a reader | %.1f s, anonymous RSS then %.0f MB |' % (load_s, rss_ann))
        print('| recall@10 (approximate vs exact, %d queries) | %.4f |' % (len(queries), recall))
        print('| approximate query, median / p95 (Index.search_ids, k=10) | %.2f / %.2f ms |'
              % (ann_med, float(np.percentile(ann_ms, 95))))
        print('| exact scan query, median (%d queries) | %.1f ms |' % (len(scan_ms), scan_med))
        print('| speed-up (median scan / median approximate) | %.0fx |' % (scan_med / ann_med))
        print('| add %d rows (`index --from`, whole command) | %.1f s |' % (args.add, add_s))
        print('| of which the ANN update (diff ids, write a segment) | %s s |'
              % ('%.2f' % ann_add_s if ann_add_s is not None else '?'))
        print('| ANN bytes written for that update | %.1f MB |' % (written / 1e6))
        print('| reader refresh + first search after it | %.2f s |' % refresh_s)
        print('| added rows found as their own top-1 | %d / %d |' % (ok, len(added_q)))
        print('| peak RSS of this process | %.0f MB |' % rss_mb('VmHWM'))
        print('| benchmark runtime | %.0f s |' % total_s)
        print()
        print('| nprobe | recall@10 | median ms | p95 ms | (AnnIndex.search alone) |')
        print('|---|---|---|---|---|')
        for probe, r, med, p95 in sweep:
            print('| %d | %.4f | %.2f | %.2f | |' % (probe, r, med, p95))
    finally:
        if args.keep or args.reuse:
            say('kept %s' % tmp)
        else:
            shutil.rmtree(str(tmp), ignore_errors=True)


if __name__ == '__main__':
    main()
