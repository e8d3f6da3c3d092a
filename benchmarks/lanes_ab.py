"""Paired A/B checks behind the lanes' settings (docs/speed.md, "Photos end to end").

    .venv/bin/python benchmarks/lanes_ab.py cores             # do two busy processes add up to 2x one?
    .venv/bin/python benchmarks/lanes_ab.py ahead 12MP 1MP    # 1 or 2 batches in flight per lane
    .venv/bin/python benchmarks/lanes_ab.py serial 12MP 1MP   # towers free, or one at a time
    .venv/bin/python benchmarks/lanes_ab.py pin 12MP 1MP      # lanes float, or each pinned to a core
    .venv/bin/python benchmarks/lanes_ab.py fuse 12MP 1MP     # the tower eager, or fused (encode end to end)
    .venv/bin/python benchmarks/lanes_ab.py tower             # the tower alone, eager or fused, batch 1/8/32
    .venv/bin/python benchmarks/lanes_ab.py serve             # serve's photo queries, fuse off or auto

On a VM whose speed drifts with the host's other guests, single runs swing by 2x, so each
check alternates its two settings run after run (A B, B A, ...) and reports the median of the
paired ratios B / A. ``ahead``, ``serial``, ``pin`` and ``fuse`` run ``encode``'s own
``write_embeddings`` on 24 generated JPEGs per set (ResNet-152 random weights,
``precision='auto'``, batch 8; ``fuse`` against a second copy of the tower fused for the lanes'
batches). ``tower`` times the tower alone on prepared batches, eager against fused for that
batch size, with 1 torch thread and with 2, alternating pass by pass. ``serve`` asks two
search services (what ``serve`` runs behind HTTP, in bf16, over a 10,000-row index) one photo
query at a time, ``--fuse off`` against ``auto`` (fused at batch 1), alternating query by
query: the time from submitting transformed pixels to the hits (the worker thread's tower
pass and search; decoding an upload, on the request's thread, is left out). ``cores``
times a Python loop, an fp32 and a bf16 2048x2048 matrix product (one torch thread) in one
process, then in two processes at once, and prints the throughput of two over one.
"""
import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _work(kind, q):
    t = time.perf_counter()
    if kind == 'python loop':
        s = 0
        for i in range(20000000):
            s += i
    else:
        import torch
        torch.set_num_threads(1)
        dtype = torch.float32 if kind == 'fp32 matmul' else torch.bfloat16
        a = torch.randn(2048, 2048, dtype=dtype)
        a @ a
        t = time.perf_counter()
        for _ in range(20 if dtype == torch.float32 else 60):
            a @ a
    q.put(time.perf_counter() - t)


def _at_once(kind, n):
    q = mp.get_context('spawn').Queue()
    procs = [mp.get_context('spawn').Process(target=_work, args=(kind, q)) for _ in range(n)]
    for p in procs:
        p.start()
    took = max(q.get() for _ in procs)
    for p in procs:
        p.join()
    return took


def cores(rounds):
    for r in range(rounds):
        for kind in ('python loop', 'fp32 matmul', 'bf16 matmul'):
            one, two = _at_once(kind, 1), _at_once(kind, 2)
            print('| %d | %s | %.2f s | %.2f s | %.2fx |' % (r + 1, kind, one, two, 2 * one / two), flush=True)


def paired(check, sets, runs):
    with tempfile.TemporaryDirectory(prefix='lanes_ab.') as tmp:
        _paired(check, sets, runs, Path(tmp))


def _paired(check, sets, runs, tmp):
    import logging

    from benchmarks.input_pipeline import SETS, _write_photos
    from tests.support.vsepp_release import write_release_checkpoint
    from vseimageencoder.pipeline import batch_threads as lanes
    from vseimageencoder.release.checkpoint import load_tower
    from vseimageencoder.cli.encode import write_embeddings
    from vseimageencoder.model.inference import InferenceTower

    logging.getLogger('vseimageencoder').setLevel(logging.ERROR)
    ckpt = tmp / 'model_best.pth.tar'
    write_release_checkpoint(ckpt, 'resnet152', legacy=True, seed=1, text=False)
    tower, _ = load_tower(str(ckpt))
    model = InferenceTower(tower, 'auto')
    lock = threading.Lock()

    def one_at_a_time(x):
        with lock:
            return model(x)

    pinned_threads = {}

    def pinned(x):
        # A lane thread runs its first batch's tower after its first decodes; from then on it
        # stays on a core of its own (the first lane on CPU 0, the next on CPU 1, ...).
        me = threading.get_ident()
        if me not in pinned_threads:
            with lock:
                cpus = sorted(os.sched_getaffinity(0))
                pinned_threads[me] = cpus[len(pinned_threads) % len(cpus)]
            os.sched_setaffinity(0, {pinned_threads[me]})
        return model(x)

    fused = None
    if check == 'fuse':
        from vseimageencoder.pipeline.thread_budget import torch_threads
        fused = InferenceTower(load_tower(str(ckpt))[0], 'auto')
        with torch_threads(1):  # as each of the 2 lanes runs it
            assert fused.fuse(lanes.chunk_size(24, 8, 2)), 'the tower could not be fused here'
    settings = {'ahead': (('1 per lane', model, 1), ('2 per lane', model, 2)),
                'fuse': (('eager', model, lanes.AHEAD_PER_LANE), ('fused', fused, lanes.AHEAD_PER_LANE)),
                'serial': (('towers free', model, lanes.AHEAD_PER_LANE),
                           ('one tower at a time', one_at_a_time, lanes.AHEAD_PER_LANE)),
                'pin': (('lanes float', model, lanes.AHEAD_PER_LANE),
                        ('each lane pinned to a core', pinned, lanes.AHEAD_PER_LANE))}[check]
    default_ahead = lanes.AHEAD_PER_LANE
    for name in sets:
        paths = _write_photos(tmp / name, 24, SETS[name])
        rates = {s[0]: [] for s in settings}
        for r in range(runs):
            for label, m, ahead in (settings if r % 2 == 0 else settings[::-1]):
                lanes.AHEAD_PER_LANE = ahead
                pinned_threads.clear()
                t = time.perf_counter()
                write_embeddings(m, model.embed_size, paths, tmp / 'out.npy', 8, False, 'fast', None,
                                 fuse=False)  # the fused copy stays fused; the eager one eager
                rates[label].append(len(paths) / (time.perf_counter() - t))
        lanes.AHEAD_PER_LANE = default_ahead
        a, b = (rates[s[0]] for s in settings)
        print('| %s | %s | %s | %.3f |' % (name, ' '.join('%.1f' % x for x in a), ' '.join('%.1f' % x for x in b),
                                            float(np.median([y / x for x, y in zip(a, b)]))), flush=True)


def tower(runs, precision='auto'):
    with tempfile.TemporaryDirectory(prefix='lanes_ab.') as tmp:
        _tower(runs, precision, Path(tmp))


def _tower(runs, precision, tmp):
    import torch

    from tests.support.vsepp_release import write_release_checkpoint
    from vseimageencoder.release.checkpoint import load_tower
    from vseimageencoder.model.inference import InferenceTower
    from vseimageencoder.pipeline.thread_budget import torch_threads

    ckpt = tmp / 'model_best.pth.tar'
    write_release_checkpoint(ckpt, 'resnet152', legacy=True, seed=1, text=False)
    eager = InferenceTower(load_tower(str(ckpt))[0], precision)
    print('Tower: resnet152 random weights, precision %s (-> %s).' % (precision, eager.precision))
    print()
    for b in (1, 8, 32):
        fused = InferenceTower(load_tower(str(ckpt))[0], precision)
        x = torch.from_numpy(np.random.RandomState(b).randn(b, 3, 224, 224).astype(np.float32))
        for threads in (1, 2):
            with torch_threads(threads):
                t = time.perf_counter()
                assert fused.fuse(b), 'the tower could not be fused here'
                fuse_s = time.perf_counter() - t
                eager(x), fused(x)  # warm-up at this thread count
                cos = float(torch.nn.functional.cosine_similarity(eager(x), fused(x)).min())
                times = {'eager': [], 'fused': []}
                for r in range(runs):
                    for label, m in ((('eager', eager), ('fused', fused)) if r % 2 == 0
                                     else (('fused', fused), ('eager', eager))):
                        t = time.perf_counter()
                        m(x)
                        times[label].append((time.perf_counter() - t) / b * 1e3)
            a, f = times['eager'], times['fused']
            print('| %d | %d | %.1f | %.1f | %.2fx | %.6f | %.1f |' % (
                b, threads, float(np.median(a)), float(np.median(f)),
                float(np.median([x / y for x, y in zip(a, f)])), cos, fuse_s), flush=True)
            fused.fused_batch_size = None  # fuse again at the next thread count
        del fused


def serve(runs):
    import logging

    from tests.support.photos import write_photo
    from tests.support.py27_pickle import vocab_words, write_py27_release_checkpoint, write_py27_vocab
    from vseimageencoder.index import update_index
    from vseimageencoder.serve import SearchService
    from vseimageencoder.serve.uploads import upload_pixels

    logging.getLogger('vseimageencoder').setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix='lanes_ab.') as tmp:
        tmp = Path(tmp)
        model = tmp / 'model' / 'model_best.pth.tar'
        write_py27_release_checkpoint(model, 'resnet152', embed_size=1024, word_dim=300, vocab_size=100, seed=1)
        write_py27_vocab(model.parent / 'f30k_vocab.pkl', vocab_words(96))
        emb = np.random.default_rng(0).standard_normal((10000, 1024), dtype=np.float32)
        np.save(tmp / 'emb.npy', emb / np.linalg.norm(emb, axis=1, keepdims=True))
        (tmp / 'emb.files.txt').write_text(''.join('/photos/%05d.jpg\n' % i for i in range(10000)))
        update_index(tmp / 'idx', model_path=model, from_npy=tmp / 'emb.npy', precision='bf16')
        photos = [upload_pixels(write_photo(tmp / ('p%d.jpg' % i), 800, 600, seed=i).read_bytes(), 'fast')
                  for i in range(4)]
        t = time.perf_counter()
        fused = SearchService(tmp / 'idx', model, precision='bf16', refresh_seconds=0)
        fused_start = time.perf_counter() - t
        t = time.perf_counter()
        eager = SearchService(tmp / 'idx', model, precision='bf16', refresh_seconds=0, fuse=False)
        eager_start = time.perf_counter() - t
        assert fused.fused and not eager.fused
        try:
            for service in (eager, fused, eager, fused):  # warm-up
                service.search_pixels(photos[0], 20)
            times = {'off': [], 'auto': []}
            for r in range(runs):
                photo = photos[r % len(photos)]
                for label, service in ((('off', eager), ('auto', fused)) if r % 2 == 0
                                       else (('auto', fused), ('off', eager))):
                    t = time.perf_counter()
                    service.search_pixels(photo, 20)
                    times[label].append((time.perf_counter() - t) * 1e3)
        finally:
            fused.close()
            eager.close()
    a, f = times['off'], times['auto']
    print('| %d | %.1f | %.1f | %.2fx | %.1f | %.1f |' % (
        runs, float(np.median(a)), float(np.median(f)), float(np.median([x / y for x, y in zip(a, f)])),
        eager_start, fused_start), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('check', choices=('cores', 'ahead', 'serial', 'pin', 'fuse', 'tower', 'serve'))
    ap.add_argument('sets', nargs='*', default=['12MP', '1MP'])
    ap.add_argument('--runs', type=int, default=6, help='runs of each setting, alternating (default: 6)')
    ap.add_argument('--precision', default='auto', choices=('fp32', 'bf16', 'fp16', 'auto'),
                    help='the tower\'s precision for the tower check (default: auto)')
    args = ap.parse_args()
    from benchmarks.ann_bench import cpu_name
    print('Machine: %s, 2 cores. Date: %s UTC.' % (cpu_name(), time.strftime('%Y-%m-%d %H:%M', time.gmtime())))
    print()
    if args.check == 'cores':
        print('| round | work | 1 process | 2 processes at once | throughput, 2 over 1 |')
        print('|---|---|---|---|---|')
        cores(max(1, args.runs // 3))
    elif args.check == 'tower':
        print('| batch | torch threads | eager ms/img (median) | fused ms/img (median) | '
              'median of paired ratios, eager / fused | min cosine fused to eager | fuse() s |')
        print('|---|---|---|---|---|---|---|')
        tower(args.runs, args.precision)
    elif args.check == 'serve':
        print('| queries | --fuse off ms/query (median) | --fuse auto ms/query (median) | '
              'median of paired ratios, off / auto | service start s, off | service start s, auto |')
        print('|---|---|---|---|---|---|')
        serve(args.runs)
    else:
        a, b = {'ahead': ('1 per lane', '2 per lane'), 'serial': ('towers free', 'one tower at a time'),
                'pin': ('lanes float', 'each lane pinned to a core'), 'fuse': ('eager', 'fused')}[args.check]
        print('| photos | %s img/s | %s img/s | median of paired ratios, %s / %s |' % (a, b, b, a))
        print('|---|---|---|---|')
        paired(args.check, args.sets, args.runs)


if __name__ == '__main__':
    main()
