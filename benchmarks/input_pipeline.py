"""Photos through ``encode``'s own code path against the machine's CPU bound, measured in the
same run, with every candidate pipeline side by side.

    .venv/bin/python benchmarks/input_pipeline.py          # 32 x 12 MP and 32 x 1 MP JPEGs, auto, batch 8
    .venv/bin/python benchmarks/input_pipeline.py --sets 12MP --repeats 3 --candidates lanes before

**The tower** (``--tower``): by default fused for the run's batch size
(:meth:`~vseimageencoder.model.inference.InferenceTower.fuse`, what ``encode`` and ``index`` run
in bf16 for 256 images or more); the bound, the all-cores figure and every
candidate but ``lanes-eager`` run it. The reference rows run the unfused tower, so the
cosines include what fusion changes.

Generated photos (``tests/support/photos.py``: 4000x3000 and 1200x900 JPEGs at quality 90, like a
phone's; 8 distinct photos, the rest copies under other names) and a ResNet-152 checkpoint in
the VSE++ release layout with random weights are written to a temporary folder.

**The bound** (per set, measured in this run): ``cores / (decode + tower)`` images/s, where

- ``decode`` is the core-seconds per image of the reduced JPEG decode alone (libjpeg's DCT
  scaling through PIL's ``draft``, as ``resize='fast'`` decodes), on one thread, one pass over
  the 8 distinct photos (each decoded once, as a pipeline decodes it);
- ``tower`` is the prepared tower's core-seconds per image at the batch size on
  already-transformed batches: the smaller of one torch thread's seconds and ``cores``
  threads' seconds times ``cores`` (the cheaper way the machine can run it).

Resizing, cropping, normalising and all Python work per image are left out of the bound: a
pipeline pays for them out of the gap.

Beside it, **the all-cores-busy figure**: the same two terms measured with every core doing
that work at once (one thread per core), ``cores / (decode_busy + tower_busy)``. A CPU that
clocks a lone busy core higher than all of them (turbo), or cores that share a memory bus,
give less than ``cores`` times the lone figure; this says how much less, and pipelines are
shown against both.

Both sides are measured in every round (``--repeats``): a shared VM's speed drifts by up to
2x within seconds (other guests on the host), so a bound measured once would be compared with
runs made at another speed. The bound is measured before the first round and after each, so
every round's runs are bracketed by two measurements and count against their mean cost. Each
side is one sample per measurement (one pass of decodes, one tower run, one pipeline run), so
neither side gets the luckier of several samples. The table gives each candidate's best round
against the bound from the best terms of all measurements (the strictest reading), and the
median of its per-round ratios.

**Candidates** (each run end to end, the rows written, in ``--repeats`` interleaved rounds,
the 1-minute load average printed with each figure):

- ``lanes``: ``vseimageencoder.cli.encode.write_embeddings`` as ``encode`` runs it (default
  readers: one lane per core, each reading a batch and running the tower on it with one
  torch thread), rows streamed to a .npy;
- ``lanes-eager``: the same with the tower as loaded, unfused (``fuse=False``): what the
  oneDNN Graph fusion of :mod:`vseimageencoder.model.onednn_graph` gains end to end;
- ``before``: one reader thread feeding the tower on the calling thread, which keeps torch's
  default threads (one per core): ``encode``'s default before lanes;
- ``feeding-budget``: the same with the tower's threads cut to the cores the reader leaves;
- ``main``: ``--readers 0``, reading on the calling thread, the tower on every core;
- ``processes``: one reader process (spawned, one thread) feeding the tower, which keeps the
  other cores;
- ``tv-decode``: lanes whose images are decoded in full by ``torchvision.io.decode_jpeg``
  (libjpeg-turbo) and resized by torch (:mod:`vseimageencoder.pipeline.cuda_decode` on the CPU);
- ``lanes-exact``: lanes with ``resize='exact'`` (every pixel decoded: what decoding
  straight to the reduced size saves).

Each candidate's rows are compared with the faithful transform's (``resize='exact'``, read on
the main thread, the same tower): the worst cosine is printed, and the worst "centred" one
(the mean of the 8 distinct photos' exact embeddings subtracted from both first: a tower with
random weights maps every photo near one direction, which plain cosines hide). Then where
the lanes' time goes: one more lanes run with the transform and the tower timed inside the
lanes, per image, against the same work alone on one thread, and how busy the lanes were.
Then the per-image stages on one thread (where a reader's time goes: a SIMD resize could
only shave the resize column), and with ``--uint8`` the transform of decoded uint8 batches.
Prints markdown tables.
"""
import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

SETS = {'12MP': (4000, 3000), '1MP': (1200, 900)}
CANDIDATES = ('lanes', 'lanes-eager', 'before', 'feeding-budget', 'main', 'processes', 'tv-decode', 'lanes-exact')
DESCRIBE = {
    'lanes': 'lanes (default now): encode\'s write_embeddings, %(cores)d lanes x 1 torch thread',
    'lanes-eager': 'lanes with the tower unfused (eager, as before fusion)',
    'before': 'before: 1 reader thread feeding the tower, torch threads %(cores)d',
    'feeding-budget': '1 reader thread feeding the tower, torch threads %(rest)d',
    'main': 'main thread reads (--readers 0), torch threads %(cores)d',
    'processes': '1 reader process feeding the tower, torch threads %(rest)d',
    'tv-decode': 'lanes, torchvision.io.decode_jpeg full decode + torch resize',
    'lanes-exact': 'lanes, resize=exact (full PIL decode)',
}


def _load_avg() -> float:
    return os.getloadavg()[0]


def _write_photos(folder: Path, n: int, size, distinct: int = 8):
    from tests.support.photos import write_photo

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


# ----------------------------------------------------------------------------- the bound

def _decode_one(path):
    """The reduced decode of one JPEG, as resize='fast' decodes (PIL's draft, DCT scaling)."""
    from PIL import Image

    from vseimageencoder.images import read, transform
    with Image.open(str(path)) as img:
        img.draft('RGB', (transform.RESIZE * transform.FAST_MARGIN,) * 2)
        img.load()


def _decode_seconds(paths):
    """Core-seconds per image of the reduced decode alone (as resize='fast' decodes): one pass,
    each file decoded once, as a pipeline decodes it. (Not the best of two decodes per photo:
    the second is a warm re-decode and, on a drifting VM, the luckier of two samples against
    the pipeline's one.)"""
    t = time.perf_counter()
    for p in paths:
        _decode_one(p)
    return (time.perf_counter() - t) / len(paths)


def _transform_seconds(paths):
    """Seconds per image of the whole fast transform of a file on one thread (one pass)."""
    from vseimageencoder.images.transform import transform

    t = time.perf_counter()
    for p in paths:
        transform(p, resize='fast')
    return (time.perf_counter() - t) / len(paths)


def _tower_seconds(model, batch_size, cores, batches=3):
    """Core-seconds per image of the tower: min(1 thread, cores threads x cores)."""
    import torch

    from vseimageencoder.pipeline.thread_budget import torch_threads

    x = torch.from_numpy(np.random.RandomState(0).randn(batch_size, 3, 224, 224).astype(np.float32))
    out = {}
    for threads in sorted({1, cores}):
        with torch_threads(threads):
            model(x)  # warm-up at this thread count
            t = time.perf_counter()
            for _ in range(batches):
                model(x)
            out[threads] = (time.perf_counter() - t) / (batches * batch_size) * threads
    return min(out.values()), out


def _busy_seconds(model, paths, batch_size, cores, batches=2):
    """Core-seconds per image of the reduced decode and of the tower with every core doing
    that work at once (one thread per core, one torch thread each): what the cores give when
    all are busy, which on a CPU that clocks a lone busy core higher is less than ``cores``
    times the lone figure."""
    import threading

    import torch

    x = torch.from_numpy(np.random.RandomState(0).randn(batch_size, 3, 224, 224).astype(np.float32))

    def all_cores(work):
        threads = [threading.Thread(target=work) for _ in range(cores)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return time.perf_counter() - t

    def tower_runs():
        torch.set_num_threads(1)
        for _ in range(batches):
            model(x)

    decode = all_cores(lambda: _decode_seconds(paths)) * cores / (cores * len(paths))
    all_cores(lambda: (torch.set_num_threads(1), model(x)))  # warm-up of each thread
    tower = all_cores(tower_runs) * cores / (cores * batches * batch_size)
    return decode, tower


# ----------------------------------------------------------------------------- candidates

def _feeding(model, paths, batch_size, load, readers, threads, pool=None):
    """Reader threads (or a process pool) transforming images ahead of the tower on this thread."""
    import torch

    from vseimageencoder.pipeline.prefetch import read_in_order
    from vseimageencoder.pipeline.thread_budget import torch_threads

    rows = []
    batch = np.empty((batch_size, 3, 224, 224), np.float32)
    k = 0
    with torch_threads(threads):
        def flush(k):
            rows.append(model(torch.from_numpy(batch[:k])).numpy())
        if pool is not None:
            it = ((p, x) for p, x in zip(paths, pool.imap(load, [str(p) for p in paths], chunksize=1)))
            ctx = None
        else:
            ctx = read_in_order(paths, load, readers, batch_size + readers)
            it = ctx.__enter__()
        try:
            for _, x in it:
                batch[k] = x
                k += 1
                if k == batch_size:
                    flush(k)
                    k = 0
            if k:
                flush(k)
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)
    return np.concatenate(rows)


def _run_candidate(name, model, paths, batch_size, cores, tmp, pool, eager=None):
    from vseimageencoder.images import read, transform

    fast = functools.partial(transform.transform, resize='fast')
    if name in ('lanes', 'lanes-eager', 'lanes-exact'):
        # encode's own write_embeddings; lanes-eager with the unfused tower, kept unfused.
        from vseimageencoder.cli.encode import write_embeddings
        m, fuse = (eager, False) if name == 'lanes-eager' else (model, None)
        out = tmp / 'lanes.npy'
        skipped = write_embeddings(m, m.embed_size, paths, out, batch_size, False,
                                   'exact' if name == 'lanes-exact' else 'fast', None, fuse=fuse)
        assert skipped == 0
        return np.load(str(out))
    if name == 'tv-decode':
        from vseimageencoder.pipeline.cuda_decode import load_batch
        from vseimageencoder.pipeline.batch_threads import embed_in_lanes
        from vseimageencoder.pipeline.thread_budget import thread_budget

        def load(p):
            batch, positions, errors = load_batch([p], 'cpu')
            if errors:
                raise errors[0][1]
            return batch[0].numpy()
        rows = []
        b = thread_budget(cores, None)
        embed_in_lanes(model, paths, load, lambda r, pos: rows.append(r), batch_size, b.reader_threads,
                       b.torch_threads)
        return np.concatenate(rows)
    if name == 'before':
        return _feeding(model, paths, batch_size, fast, max(1, cores // 2), cores)
    if name == 'feeding-budget':
        from vseimageencoder.pipeline.thread_budget import thread_budget
        b = thread_budget(cores, 1, readers_run_tower=False)
        return _feeding(model, paths, batch_size, fast, b.reader_threads, b.torch_threads)
    if name == 'main':
        from vseimageencoder.pipeline.embed_files import embed_files
        rows = []
        embed_files(model, paths, lambda r, pos: rows.append(r), batch_size, 'fast', 0)
        return np.concatenate(rows)
    if name == 'processes':
        from vseimageencoder.pipeline.thread_budget import thread_budget
        b = thread_budget(cores, 1, readers_run_tower=False)
        return _feeding(model, paths, batch_size, _fast_transform, 1, b.torch_threads, pool)
    raise ValueError(name)


def _fast_transform(path):  # module level: picklable for the process pool
    from vseimageencoder.images.transform import transform
    return transform(path, resize='fast')


def _pool_init():
    os.environ['OMP_NUM_THREADS'] = '1'


def _min_cosine(a, b, centre=None):
    """Worst row cosine of ``a`` to ``b``; with ``centre``, of both with it subtracted (a
    random-weight tower maps every photo near one direction, which hides differences)."""
    if centre is not None:
        a, b = a - centre, b - centre
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


def _profile_lanes(model, paths, batch_size, cores):
    """Where a lane's time goes: the lanes run of ``encode`` with its load and tower timed.

    :return: ``(elapsed, per-image ms of transform in lanes, per-image ms of tower in lanes,
        busy fraction of the lanes)``.
    """
    import threading

    from vseimageencoder.images import read, transform
    from vseimageencoder.pipeline.batch_threads import embed_in_lanes
    from vseimageencoder.pipeline.thread_budget import thread_budget

    lock = threading.Lock()
    spent = {'load': 0.0, 'tower': 0.0}

    def timed(key, fn):
        def run(x):
            t = time.perf_counter()
            try:
                return fn(x)
            finally:
                with lock:
                    spent[key] += time.perf_counter() - t
        return run

    b = thread_budget(cores, None)
    t = time.perf_counter()
    embed_in_lanes(timed('tower', model), paths, timed('load', functools.partial(transform.transform, resize='fast')),
                   lambda r, pos: None, batch_size, b.reader_threads, b.torch_threads)
    elapsed = time.perf_counter() - t
    n = len(paths)
    return (elapsed, spent['load'] / n * 1e3, spent['tower'] / n * 1e3,
            (spent['load'] + spent['tower']) / (elapsed * b.reader_threads))


# ----------------------------------------------------------------------------- stages

def _stages(paths):
    """Median ms per image on one thread: reduced decode, the rest of the fast transform,
    full decode, the rest of the exact transform."""
    from vseimageencoder.images import read, transform

    rows = {'fast': ([], []), 'exact': ([], [])}
    for p in paths:
        for mode in ('fast', 'exact'):
            t0 = time.perf_counter()
            if mode == 'fast':
                img, *geometry = read._read(p, transform.RESIZE * transform.FAST_MARGIN)
                t1 = time.perf_counter()
                transform.normalize_pixels(np.asarray(transform._fast_resize_crop(img, *geometry)))
            else:
                img = read.read_image(p)
                t1 = time.perf_counter()
                transform.normalize_pixels(np.asarray(transform._exact_resize_crop(img)))
            t2 = time.perf_counter()
            rows[mode][0].append(t1 - t0)
            rows[mode][1].append(t2 - t1)
    return {m: (float(np.median(d)) * 1e3, float(np.median(r)) * 1e3) for m, (d, r) in rows.items()}


def _uint8_path(paths, count):
    """ms per image of ``transform_batch`` on decoded uint8 batches (what ``encode()`` does
    with raw pixels): PIL one image at a time, PIL on threads (exact), torch batched (fast)."""
    from vseimageencoder.images import read, transform

    pixels = np.stack([np.asarray(read.read_image(p)) for p in paths[:count]])
    rows = []
    for label, kw in (('PIL, one image at a time, 1 thread', dict(resize='exact', workers=1)),
                      ('exact: PIL on %d threads' % min(count, os.cpu_count() or 1), dict(resize='exact')),
                      ('fast: torch, whole batch', dict(resize='fast'))):
        transform.transform_batch(pixels[:1], channel_axis=-1, **kw)  # warm-up
        t = time.perf_counter()
        transform.transform_batch(pixels, channel_axis=-1, **kw)
        rows.append((label, (time.perf_counter() - t) / count * 1e3))
    return pixels.shape[1:3], rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=32, help='images per set (default: 32)')
    ap.add_argument('--batch-size', type=int, default=8, help='encode batch size (default: 8)')
    ap.add_argument('--precision', default='auto', choices=('fp32', 'bf16', 'fp16', 'auto'))
    ap.add_argument('--cnn', default='resnet152')
    ap.add_argument('--tower', default='fused', choices=('fused', 'eager'),
                    help='the tower the bound and the candidates run: fused for the batch size '
                         '(what encode and index run for 256 images or more) or eager (default: fused)')
    ap.add_argument('--sets', nargs='+', default=list(SETS), choices=list(SETS))
    ap.add_argument('--candidates', nargs='+', default=list(CANDIDATES), choices=CANDIDATES)
    ap.add_argument('--repeats', type=int, default=3,
                    help='rounds: the bound measured, then each candidate run once (default: 3)')
    ap.add_argument('--no-stages', action='store_true', help='skip the per-stage table')
    ap.add_argument('--uint8', action='store_true',
                    help='also time transform_batch on decoded uint8 batches (encode() on raw pixels)')
    args = ap.parse_args(argv)

    import logging

    import torch

    from benchmarks.bench import _machine
    from tests.support.vsepp_release import write_release_checkpoint
    from vseimageencoder.release.checkpoint import load_tower
    from vseimageencoder.model.inference import InferenceTower
    from vseimageencoder.pipeline.thread_budget import cpu_cores, thread_budget

    logging.getLogger('vseimageencoder').setLevel(logging.ERROR)
    cores = min(cpu_cores(), torch.get_num_threads())
    sub = {'cores': cores, 'rest': thread_budget(cores, 1, readers_run_tower=False).torch_threads}
    lines = []
    pool = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = tmp / 'model_best.pth.tar'
        write_release_checkpoint(ckpt, args.cnn, legacy=True, seed=1, text=False)
        photos = {name: _write_photos(tmp / name, args.n, SETS[name]) for name in args.sets}
        tower, _ = load_tower(str(ckpt))
        model = InferenceTower(tower, args.precision)
        # The reference rows and the lanes-eager candidate run the tower as loaded (unfused).
        eager = InferenceTower(load_tower(str(ckpt))[0], args.precision)
        if args.tower == 'fused':
            from vseimageencoder.pipeline.batch_threads import chunk_size
            from vseimageencoder.pipeline.thread_budget import torch_threads
            budget = thread_budget(cores, None)
            with torch_threads(budget.torch_threads):
                fused = model.fuse(chunk_size(args.n, args.batch_size, budget.reader_threads))
            if not fused:
                raise SystemExit('the tower could not be fused here (see the warning); run with --tower eager')
        lines += ['Machine: %s. Date: %s. %s random weights, precision %s (-> %s), batch size %d, '
                  '%d images per set (8 distinct), cores budgeted: %d; tower: %s.'
                  % (_machine(), time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), args.cnn,
                     args.precision, model.precision, args.batch_size, args.n, cores,
                     'fused for batches of %d (oneDNN Graph), unfused for lanes-eager and the reference rows'
                     % model.fused_batch_size if model.fused_batch_size else 'eager'), '']
        if 'processes' in args.candidates:
            import multiprocessing
            pool = multiprocessing.get_context('spawn').Pool(1, initializer=_pool_init)
            pool.map(_fast_transform, [str(photos[args.sets[0]][0])])  # started before any clock
        try:
            for name in args.sets:
                paths = photos[name]
                distinct = paths[:8]
                from vseimageencoder.pipeline.embed_files import embed_files
                ref = []
                embed_files(eager, paths, lambda r, pos: ref.append(r), args.batch_size, 'exact', 0, fuse=False)
                ref = np.concatenate(ref)
                load0 = _load_avg()
                # This VM's speed drifts by 2x within seconds (other guests on the host), so the
                # bound is measured again in every round, right beside the candidates' runs:
                # each side's best round counts, and the per-round ratios are shown too.
                best = {c: 0.0 for c in args.candidates}
                loads = {c: [] for c in args.candidates}
                ratios = {c: [] for c in args.candidates}
                round_bounds = []
                cos = {}
                decode = stage_rest = tower_s = None
                busy_decode = busy_tower = None
                tower_by_threads = {}

                def bound_sample():
                    nonlocal decode, stage_rest, tower_s
                    d = _decode_seconds(distinct)
                    rest = _transform_seconds(distinct) - d
                    tw, by_threads = _tower_seconds(model, args.batch_size, cores)
                    if decode is None or d < decode:
                        decode, stage_rest = d, rest
                    if tower_s is None or tw < tower_s:
                        tower_s = tw
                    for k, v in by_threads.items():
                        tower_by_threads[k] = min(v, tower_by_threads.get(k, v))
                    return d + tw

                before = bound_sample()
                for r in range(args.repeats):
                    order = args.candidates[r % len(args.candidates):] + args.candidates[:r % len(args.candidates)]
                    rates = {}
                    for c in order:
                        loads[c].append(_load_avg())
                        t = time.perf_counter()
                        rows = _run_candidate(c, model, paths, args.batch_size, cores, tmp, pool, eager)
                        rates[c] = len(paths) / (time.perf_counter() - t)
                        assert rows.shape == ref.shape, (c, rows.shape)
                        best[c] = max(best[c], rates[c])
                        cos[c] = (_min_cosine(rows, ref), _min_cosine(rows, ref, ref[:8].mean(axis=0)))
                    # The round's runs are bracketed by a bound measured right before and right
                    # after them (the next round's "before"): each counts against the mean cost.
                    after = bound_sample()
                    round_bound = cores / ((before + after) / 2)
                    round_bounds.append(round_bound)
                    for c in order:
                        ratios[c].append(rates[c] / round_bound)
                    before = after
                    bd, bt = _busy_seconds(model, distinct, args.batch_size, cores)
                    if busy_decode is None or bd + bt < busy_decode + busy_tower:
                        busy_decode, busy_tower = bd, bt
                bound = cores / (decode + tower_s)
                busy_bound = cores / (busy_decode + busy_tower)
                lines += ['**%s** (%dx%d JPEGs, %.1f MB each): reduced decode %.1f core-ms/img, tower '
                          '%.1f core-ms/img (%s), bound %d / (%.1f + %.1f) ms = **%.2f img/s** (each term the '
                          'best of %d measurements, one before the first round and one after each); load '
                          'average %.2f.' % (
                              name, SETS[name][0], SETS[name][1], os.path.getsize(str(paths[0])) / 1e6,
                              decode * 1e3, tower_s * 1e3,
                              ', '.join('%d thread(s): %.1f' % (k, v * 1e3) for k, v in sorted(tower_by_threads.items())),
                              cores, decode * 1e3, tower_s * 1e3, bound, args.repeats + 1, load0), '',
                          'With every core doing the same work at once (one thread each; the best of the rounds): '
                          'reduced decode %.1f core-ms/img, tower %.1f core-ms/img, so the cores together give '
                          '%d / (%.1f + %.1f) ms = **%.2f img/s** (%.2fx the bound above).' % (
                              busy_decode * 1e3, busy_tower * 1e3, cores, busy_decode * 1e3, busy_tower * 1e3,
                              busy_bound, busy_bound / bound), '',
                          '| candidate | img/s (best round) | x bound (best / best) | median of the rounds\' '
                          'x bound (each against the bound measured before and after it) | x all-cores-busy figure (best / best) | '
                          'min cosine to exact | min centred cosine | load avg at each run |',
                          '|---|---:|---:|---:|---:|---:|---:|---|']
                prof = _profile_lanes(model, paths, args.batch_size, cores)
                for c in args.candidates:
                    lines.append('| %s | %.2f | %.2fx | %.2fx | %.2fx | %.6f | %.5f | %s |' % (
                        DESCRIBE[c] % sub, best[c], best[c] / bound, float(np.median(ratios[c])),
                        best[c] / busy_bound,
                        cos[c][0], cos[c][1],
                        ' '.join('%.2f' % x for x in loads[c])))
                    print(lines[-1], file=sys.stderr)
                lines += [''] + ['Per-round x bound, %s: %s (median %.2fx, quartiles %.2fx-%.2fx).' % (
                    c, ' '.join('%.2f' % x for x in ratios[c]), float(np.median(ratios[c])),
                    float(np.percentile(ratios[c], 25)), float(np.percentile(ratios[c], 75)))
                    for c in args.candidates]
                lines += ['Per-round bound (img/s, mean of the measurements before and after the round): %s.'
                          % ' '.join('%.1f' % b for b in round_bounds)]
                lines += ['', 'Where the lanes\' time goes (%s, one more lanes run, timed inside the lanes; load '
                          'average %.2f): %.2f img/s; per image, transform (decode+resize+normalise) %.1f ms and '
                          'tower %.1f ms of lane time against %.1f and %.1f alone on one thread; lanes busy %.0f%% '
                          'of the run.' % (name, _load_avg(), len(paths) / prof[0], prof[1], prof[2],
                                           (decode + stage_rest) * 1e3, tower_by_threads[1] * 1e3, 100 * prof[3]), '']
            if not args.no_stages:
                lines += ['| photos | fast: reduced decode ms | fast: resize+crop+normalise ms | '
                          'exact: full decode ms | exact: resize+crop+normalise ms |',
                          '|---|---:|---:|---:|---:|']
                for name in args.sets:
                    st = _stages(photos[name][:8])
                    lines.append('| %s | %.1f | %.1f | %.1f | %.1f |' % (name, st['fast'][0], st['fast'][1],
                                                                         st['exact'][0], st['exact'][1]))
            if args.uint8:
                lines += ['', '| uint8 batch (encode() on raw pixels) | transform | ms/img |', '|---|---|---|']
                for name, count in (('1MP', 16), ('12MP', 4)):
                    if name in photos:
                        shape, rows = _uint8_path(photos[name], min(count, args.n))
                        for label, ms in rows:
                            lines.append('| %d x %dx%d | %s | %.1f |' % (min(count, args.n), shape[1], shape[0],
                                                                      label, ms))
            lines.append('\nload average at the end: %.2f' % _load_avg())
        finally:
            if pool is not None:
                pool.terminate()
    sys.stdout.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
