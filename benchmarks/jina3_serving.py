"""Start-up time and requests/s of a jina 3 Deployment of VSEImageEncoder, replicas 1 and 2,
against the jina-free core in the same run.

    .venv-jina3/bin/python benchmarks/jina3_serving.py                 # resnet152, gRPC
    .venv-jina3/bin/python benchmarks/jina3_serving.py --cnn resnet18 --requests 40

A checkpoint with random weights in the VSE++ release layout is written to a temporary
folder. Each measurement runs in its own fresh process (the fork hazard: no torch work before
a Deployment starts); start-up is from Deployment() to ready. Requests carry --batch uint8
224x224 images each over gRPC, sent by --clients concurrent clients (one jina Client each,
made before the clock starts); "core" is ImageEncoder.encode on the same batches, one after
the other, in one process. Before the clock starts, every replica has run the same batches
(jina sends requests to replicas in turn) and the core has run them too.

Every process (the core's and each replica) runs torch with --threads threads (1 by default,
set through OMP_NUM_THREADS). With torch's default (one per core) on a busy 2-core machine,
the core's two OpenMP threads ran 3 to 4 times slower than one thread, while a Deployment's
replica did not slow down so: a default-threads core against a Deployment measures thread
contention, not serving (it once showed a 1-replica Deployment 3.7 times as fast as the core).

The machine may be shared: the configurations are measured in --rounds rounds, in a rotated
order each round, and the median of the rounds is reported with the spread and the load
average seen, so a burst of someone else's work cannot favour one configuration. Prints a
markdown table with the CPU named.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _cpu() -> str:
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                return '%s, %d cores' % (line.split(':', 1)[1].strip(), os.cpu_count())
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def _images(batch, seed):
    import numpy as np
    return np.random.RandomState(seed).randint(0, 256, (batch, 224, 224, 3), dtype=np.uint8)


def _load() -> float:
    try:
        return float(open('/proc/loadavg').read().split()[0])
    except (OSError, ValueError, IndexError):
        return float('nan')


def worker_deployment(ckpt, replicas, n_requests, batch, clients):
    from vseimageencoder.jina3.local import keep_jina_local
    keep_jina_local()
    import threading

    from docarray import DocList
    from jina import Client, Deployment

    from vseimageencoder.jina3 import ImageDoc

    yml = str(REPO / 'vseimageencoder' / 'jina3' / 'image.yml')
    docs = [DocList[ImageDoc]([ImageDoc(tensor=x) for x in _images(batch, i)]) for i in range(4)]
    t0 = time.perf_counter()
    dep = Deployment(uses=yml, uses_with={'model_path': ckpt, 'batch_size': batch}, replicas=replicas,
                     protocol='grpc', host='127.0.0.1')
    with dep:
        startup = time.perf_counter() - t0
        callers = [Client(host='127.0.0.1', port=dep.port, protocol='grpc') for _ in range(clients)]
        # Every replica's first passes (allocations, oneDNN kernels) before the clock: jina
        # hands requests to replicas in turn, so each sees every one of the 4 batches.
        for i in range(4 * replicas):
            callers[0].post('/encode', docs[i % 4], return_type=DocList[ImageDoc])
        counts = [0] * clients
        errors = []

        def run(k):
            try:
                for i in range(k, n_requests, clients):
                    counts[k] += len(callers[k].post('/encode', docs[i % 4], return_type=DocList[ImageDoc]))
            except Exception as e:  # reported below: a failed request must not look fast
                errors.append(e)
        threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
        load = _load()
        t1 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t1
    if errors:
        raise errors[0]
    assert sum(counts) == n_requests * batch, counts
    return {'startup_s': startup, 'req_per_s': n_requests / elapsed, 'load': load}


def worker_core(ckpt, n_requests, batch):
    from vseimageencoder.encoders import ImageEncoder

    t0 = time.perf_counter()
    enc = ImageEncoder(ckpt)
    startup = time.perf_counter() - t0
    # The same pixels as the Deployment's requests, the same batch size per forward pass.
    batches = [_images(batch, i).transpose(0, 3, 1, 2) for i in range(4)]
    for b in batches:
        enc.encode(b, batch_size=batch)
    load = _load()
    t1 = time.perf_counter()
    for i in range(n_requests):
        out = enc.encode(batches[i % 4], batch_size=batch)
    elapsed = time.perf_counter() - t1
    assert out.shape[0] == batch
    return {'startup_s': startup, 'req_per_s': n_requests / elapsed, 'load': load}


_THREADS = [1]


def _fresh(kind, *args):
    code = ('import json, sys; sys.path.insert(0, %r); from benchmarks.jina3_serving import worker_%s as w; '
            'print("RESULT " + json.dumps(w(*json.loads(sys.argv[1]))))' % (str(REPO), kind))
    env = dict(os.environ, JINA_OPTOUT_TELEMETRY='1', JINA_HIDE_SURVEY='1')
    if _THREADS[0]:
        # Inherited by the Deployment's replicas too: every process gets the same threads.
        env.update(OMP_NUM_THREADS=str(_THREADS[0]), MKL_NUM_THREADS=str(_THREADS[0]))
    r = subprocess.run([sys.executable, '-c', code, json.dumps(args)], capture_output=True, text=True,
                       env=env, cwd=str(REPO), timeout=1800)
    lines = [l for l in r.stdout.splitlines() if l.startswith('RESULT ')]
    if r.returncode != 0 or not lines:
        raise RuntimeError('%s worker failed:\n%s\n%s' % (kind, r.stdout[-3000:], r.stderr[-3000:]))
    return json.loads(lines[-1][len('RESULT '):])


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cnn', default='resnet152', choices=['resnet18', 'resnet152', 'vgg19'])
    ap.add_argument('--requests', type=int, default=24)
    ap.add_argument('--batch', type=int, default=4, help='images per request')
    ap.add_argument('--clients', type=int, default=2, help='concurrent clients')
    ap.add_argument('--replicas', type=int, nargs='+', default=[1, 2])
    ap.add_argument('--rounds', type=int, default=3, help='measurements of each configuration')
    ap.add_argument('--threads', type=int, default=1,
                    help='torch threads of every process, core and replicas (OMP_NUM_THREADS); '
                         "0: torch's default (one per core)")
    args = ap.parse_args(argv)
    _THREADS[0] = args.threads
    if min(args.requests, args.batch, args.clients, args.rounds, *args.replicas) < 1 or args.threads < 0:
        ap.error('--requests, --batch, --clients, --rounds and --replicas must be positive, '
                 '--threads 0 or more')

    from tests.vsepp_release import write_release_checkpoint

    configs = [('core (ImageEncoder, 1 process)', 'core', ())]
    configs += [('Deployment, gRPC, replicas=%d' % n, 'deployment', (n,)) for n in args.replicas]
    runs = {name: [] for name, _, _ in configs}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = str(Path(tmp) / 'model_best.pth.tar')
        write_release_checkpoint(ckpt, args.cnn, text=False)
        for r in range(args.rounds):
            for name, kind, extra in configs[r % len(configs):] + configs[:r % len(configs)]:
                if kind == 'core':
                    runs[name].append(_fresh('core', ckpt, args.requests, args.batch))
                else:
                    runs[name].append(_fresh('deployment', ckpt, extra[0], args.requests, args.batch,
                                             args.clients))
    base = _median([x['req_per_s'] for x in runs[configs[0][0]]])
    out = ['%s, %d requests of %d uint8 224x224 images, %d concurrent clients (core: one after '
           'the other), torch threads per process: %s, median of %d rounds; CPU: %s'
           % (args.cnn, args.requests, args.batch, args.clients, args.threads or 'default',
              args.rounds, _cpu()), '',
           '| what | start-up (s) | requests/s | images/s | vs core | requests/s min-max | 1-min load avg at each start |',
           '|---|---:|---:|---:|---:|---:|---:|']
    for name, _, _ in configs:
        rps = [x['req_per_s'] for x in runs[name]]
        med = _median(rps)
        out.append('| %s | %.1f | %.2f | %.1f | %.2fx | %.2f-%.2f | %s |' % (
            name, _median([x['startup_s'] for x in runs[name]]), med, med * args.batch, med / base,
            min(rps), max(rps), ' '.join('%.1f' % x['load'] for x in runs[name])))
    sys.stdout.write('\n'.join(out) + '\n')


if __name__ == '__main__':
    main()
