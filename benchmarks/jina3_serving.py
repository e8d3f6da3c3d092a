"""Requests/s of a jina 3 Deployment of VSEImageEncoder with 1 and 2 replicas, as the number
of concurrent clients grows, against the jina-free core in the same run.

    .venv-jina3/bin/python benchmarks/jina3_serving.py                  # resnet50, clients 1 2 4 8
    .venv-jina3/bin/python benchmarks/jina3_serving.py --cnn resnet152 --clients 2 4 --rounds 2
    .venv-jina3/bin/python benchmarks/jina3_serving.py --client-mode threads   # clients as threads of one process

A checkpoint with random weights in the VSE++ release layout is written to a temporary
folder. Each Deployment runs in a fresh process (the fork hazard: no torch work before a
Deployment starts) and is measured at every client count while it is up. Each request
carries --batch uint8 224x224 images over gRPC.

**Clients are separate processes** (``--client-mode processes``, the default): each
imports jina, opens its own Client, sends one warm-up request, then waits for the start
signal; all start together and each sends its share of --requests one after the other.
``--client-mode threads`` runs the clients as threads of one process instead, one jina
Client each. requests/s is the requests of all clients over the time from the common start
to the last answer.

Every process (the core's and each replica) runs torch with --threads threads (1 by default,
set through OMP_NUM_THREADS): on a 2-core machine two replicas of one thread each fill it.
"core" is ``ImageEncoder.encode`` on the same batches one after the other in one process;
"core x2" is two such processes at once (what two replicas can at best add up to).

The machine may be shared: every figure is printed with the 1-minute load average seen when
it started; --rounds repeats each Deployment's sweep and keeps the median. Prints markdown
tables with the CPU named.
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
    return os.getloadavg()[0]


def _env():
    env = dict(os.environ, JINA_OPTOUT_TELEMETRY='1', JINA_HIDE_SURVEY='1')
    if _THREADS[0]:
        # Inherited by the Deployment's replicas and the clients: every process the same.
        env.update(OMP_NUM_THREADS=str(_THREADS[0]), MKL_NUM_THREADS=str(_THREADS[0]))
    return env


_THREADS = [1]


# ----------------------------------------------------------------------------- a client process

def client_main(port, n_requests, batch, seed):
    """One client process: warm up, say READY, wait for GO on stdin, send ``n_requests``
    one after the other, print the start and end times (time.time, shared by processes)."""
    from vseimageencoder.jina3.local import keep_jina_local
    keep_jina_local()
    from docarray import DocList
    from jina import Client

    from vseimageencoder.jina3 import ImageDoc

    docs = DocList[ImageDoc]([ImageDoc(tensor=x) for x in _images(batch, seed)])
    client = Client(host='127.0.0.1', port=port, protocol='grpc')
    client.post('/encode', docs, return_type=DocList[ImageDoc])
    sys.stdout.write('READY\n')
    sys.stdout.flush()
    sys.stdin.readline()
    t0 = time.time()
    got = 0
    for _ in range(n_requests):
        got += len(client.post('/encode', docs, return_type=DocList[ImageDoc]))
    t1 = time.time()
    assert got == n_requests * batch, got
    sys.stdout.write('RESULT %s\n' % json.dumps({'start': t0, 'end': t1}))
    sys.stdout.flush()


def _clients_as_processes(port, clients, n_requests, batch):
    code = ('import sys; sys.path.insert(0, %r); from benchmarks.jina3_serving import client_main; '
            'client_main(*map(int, sys.argv[1:]))' % str(REPO))
    shares = [n_requests // clients + (1 if k < n_requests % clients else 0) for k in range(clients)]
    procs = [subprocess.Popen([sys.executable, '-c', code, str(port), str(s), str(batch), str(k)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env=_env(), cwd=str(REPO)) for k, s in enumerate(shares)]
    try:
        for p in procs:
            line = p.stdout.readline()
            if line.strip() != 'READY':
                raise RuntimeError('a client process did not get ready: %r' % line)
        load = _load()
        t0 = time.time()
        for p in procs:
            p.stdin.write('GO\n')
            p.stdin.flush()
        ends = []
        for p in procs:
            out, _ = p.communicate(timeout=1800)
            res = [l for l in out.splitlines() if l.startswith('RESULT ')]
            if p.returncode != 0 or not res:
                raise RuntimeError('a client process failed (exit %s)' % p.returncode)
            ends.append(json.loads(res[-1][len('RESULT '):])['end'])
        return n_requests / (max(ends) - t0), load
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def _clients_as_threads(port, clients, n_requests, batch):
    """``--client-mode threads``: the clients as threads of this process, one jina Client each."""
    import threading

    from docarray import DocList
    from jina import Client

    from vseimageencoder.jina3 import ImageDoc

    docs = DocList[ImageDoc]([ImageDoc(tensor=x) for x in _images(batch, 0)])
    callers = [Client(host='127.0.0.1', port=port, protocol='grpc') for _ in range(clients)]
    for c in callers:
        c.post('/encode', docs, return_type=DocList[ImageDoc])
    errors = []

    def run(k):
        try:
            for _ in range(k, n_requests, clients):
                callers[k].post('/encode', docs, return_type=DocList[ImageDoc])
        except Exception as e:  # reported below: a failed request must not look fast
            errors.append(e)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    load = _load()
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - t0
    if errors:
        raise errors[0]
    return n_requests / elapsed, load


# ----------------------------------------------------------------------------- workers

def worker_deployment(ckpt, replicas, client_counts, n_requests, batch, mode):
    from vseimageencoder.jina3.local import keep_jina_local
    keep_jina_local()
    from jina import Deployment

    yml = str(REPO / 'vseimageencoder' / 'jina3' / 'image.yml')
    t0 = time.perf_counter()
    dep = Deployment(uses=yml, uses_with={'model_path': ckpt, 'batch_size': batch}, replicas=replicas,
                     protocol='grpc', host='127.0.0.1')
    out = {}
    with dep:
        startup = time.perf_counter() - t0
        # Every replica's first passes before any clock: jina hands requests out in turn.
        run = _clients_as_processes if mode == 'processes' else _clients_as_threads
        run(dep.port, replicas, 2 * replicas, batch)
        for clients in client_counts:
            out[str(clients)] = run(dep.port, clients, n_requests, batch)
    return {'startup_s': startup, 'by_clients': out}


def worker_core(ckpt, n_requests, batch, seed=0):
    from vseimageencoder.encoders import ImageEncoder

    enc = ImageEncoder(ckpt)
    x = _images(batch, seed).transpose(0, 3, 1, 2)
    enc.encode(x, batch_size=batch)
    load = _load()
    t1 = time.perf_counter()
    for _ in range(n_requests):
        enc.encode(x, batch_size=batch)
    return {'req_per_s': n_requests / (time.perf_counter() - t1), 'load': load}


def _fresh(kind, *args, parallel=1):
    code = ('import json, sys; sys.path.insert(0, %r); from benchmarks.jina3_serving import worker_%s as w; '
            'print("RESULT " + json.dumps(w(*json.loads(sys.argv[1]))))' % (str(REPO), kind))
    procs = [subprocess.Popen([sys.executable, '-c', code, json.dumps(args)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env(), cwd=str(REPO))
             for _ in range(parallel)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=1800)
        lines = [l for l in out.splitlines() if l.startswith('RESULT ')]
        if p.returncode != 0 or not lines:
            raise RuntimeError('%s worker failed:\n%s\n%s' % (kind, out[-3000:], err[-3000:]))
        results.append(json.loads(lines[-1][len('RESULT '):]))
    return results


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cnn', default='resnet50', choices=['resnet18', 'resnet50', 'resnet152', 'vgg19'])
    ap.add_argument('--requests', type=int, default=24, help='requests per measurement, all clients together')
    ap.add_argument('--batch', type=int, default=4, help='images per request')
    ap.add_argument('--clients', type=int, nargs='+', default=[1, 2, 4, 8], help='concurrent client counts')
    ap.add_argument('--replicas', type=int, nargs='+', default=[1, 2])
    ap.add_argument('--rounds', type=int, default=1, help='sweeps of each Deployment; the median counts')
    ap.add_argument('--client-mode', choices=['processes', 'threads'], default='processes')
    ap.add_argument('--threads', type=int, default=1,
                    help='torch threads of every process (OMP_NUM_THREADS); 0: torch\'s default')
    args = ap.parse_args(argv)
    _THREADS[0] = args.threads
    if min(args.requests, args.batch, args.rounds, *args.clients, *args.replicas) < 1 or args.threads < 0:
        ap.error('--requests, --batch, --clients, --rounds and --replicas must be positive, '
                 '--threads 0 or more')

    from tests.support.vsepp_release import write_release_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = str(Path(tmp) / 'model_best.pth.tar')
        write_release_checkpoint(ckpt, args.cnn, text=False)
        per_core_requests = max(4, args.requests // 3)
        core1 = _fresh('core', ckpt, per_core_requests, args.batch)
        core2 = _fresh('core', ckpt, per_core_requests, args.batch, parallel=2)
        runs = {n: [] for n in args.replicas}
        for r in range(args.rounds):
            order = args.replicas if r % 2 == 0 else list(reversed(args.replicas))
            for n in order:
                runs[n].append(_fresh('deployment', ckpt, n, args.clients, args.requests, args.batch,
                                      args.client_mode)[0])
    core = core1[0]['req_per_s']
    both = sum(x['req_per_s'] for x in core2)
    out = ['%s, %d requests of %d uint8 224x224 images per measurement, clients as %s, torch '
           'threads per process: %s, %d round(s) (median); CPU: %s; %s'
           % (args.cnn, args.requests, args.batch, args.client_mode, args.threads or 'default',
              args.rounds, _cpu(), time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())), '',
           'core (ImageEncoder, 1 process): %.2f requests/s (load avg %.2f); 2 core processes at '
           'once: %.2f requests/s together (load avg %.2f)' % (core, core1[0]['load'], both,
                                                               core2[0]['load']), '',
           '| replicas | start-up (s) | ' + ' | '.join('%d client(s) req/s (x core)' % c for c in args.clients)
           + ' | load avg at each |',
           '|---:|---:|' + '---:|' * len(args.clients) + '---|']
    for n in args.replicas:
        cells, loads = [], []
        for c in args.clients:
            vals = [x['by_clients'][str(c)] for x in runs[n]]
            med = _median([v[0] for v in vals])
            cells.append('%.2f (%.2fx)' % (med, med / core))
            loads += ['%.1f' % v[1] for v in vals]
        out.append('| %d | %.1f | %s | %s |' % (n, _median([x['startup_s'] for x in runs[n]]),
                                                ' | '.join(cells), ' '.join(loads)))
    if 1 in runs and 2 in runs:
        ratios = ['%d: %.2fx' % (c, _median([x['by_clients'][str(c)][0] for x in runs[2]])
                                 / _median([x['by_clients'][str(c)][0] for x in runs[1]]))
                  for c in args.clients]
        out += ['', 'replicas=2 / replicas=1 by clients: ' + ', '.join(ratios)]
    sys.stdout.write('\n'.join(out) + '\n')


if __name__ == '__main__':
    main()
