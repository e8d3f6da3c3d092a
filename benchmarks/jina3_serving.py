"""Start-up time and requests/s of a jina 3 Deployment of VSEImageEncoder, replicas 1 and 2,
against the jina-free core in the same run.

    .venv-jina3/bin/python benchmarks/jina3_serving.py                 # resnet152, gRPC
    .venv-jina3/bin/python benchmarks/jina3_serving.py --cnn resnet18 --requests 40

A checkpoint with random weights in the VSE++ release layout is written to a temporary
folder. Each Deployment runs in its own fresh process (the fork hazard: no torch work before
it starts); start-up is from Deployment() to ready. Requests carry --batch uint8 224x224
images each over gRPC, sent by --clients concurrent clients; "core" is ImageEncoder.encode
on the same batches in one process. Prints a markdown table with the CPU named.
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


def worker_deployment(ckpt, replicas, n_requests, batch, clients):
    from vseimageencoder.jina3.local import keep_jina_local
    keep_jina_local()
    from concurrent.futures import ThreadPoolExecutor

    from docarray import DocList
    from jina import Client, Deployment

    from vseimageencoder.jina3 import ImageDoc

    yml = str(REPO / 'vseimageencoder' / 'jina3' / 'image.yml')
    t0 = time.perf_counter()
    dep = Deployment(uses=yml, uses_with={'model_path': ckpt, 'batch_size': batch}, replicas=replicas,
                     protocol='grpc', host='127.0.0.1')
    with dep:
        startup = time.perf_counter() - t0
        docs = [DocList[ImageDoc]([ImageDoc(tensor=x) for x in _images(batch, i)]) for i in range(4)]
        client = Client(host='127.0.0.1', port=dep.port, protocol='grpc')
        client.post('/encode', docs[0], return_type=DocList[ImageDoc])  # warm-up

        def one(i):
            c = Client(host='127.0.0.1', port=dep.port, protocol='grpc')
            return len(c.post('/encode', docs[i % 4], return_type=DocList[ImageDoc]))
        t1 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            got = sum(pool.map(one, range(n_requests)))
        elapsed = time.perf_counter() - t1
    assert got == n_requests * batch
    return {'startup_s': startup, 'req_per_s': n_requests / elapsed}


def worker_core(ckpt, n_requests, batch):
    from vseimageencoder.encoders import ImageEncoder

    t0 = time.perf_counter()
    enc = ImageEncoder(ckpt)
    startup = time.perf_counter() - t0
    batches = [_images(batch, i).transpose(0, 3, 1, 2) for i in range(4)]
    enc.encode(batches[0])
    t1 = time.perf_counter()
    for i in range(n_requests):
        enc.encode(batches[i % 4])
    return {'startup_s': startup, 'req_per_s': n_requests / (time.perf_counter() - t1)}


def _fresh(kind, *args):
    code = ('import json, sys; sys.path.insert(0, %r); from benchmarks.jina3_serving import worker_%s as w; '
            'print("RESULT " + json.dumps(w(*json.loads(sys.argv[1]))))' % (str(REPO), kind))
    env = dict(os.environ, JINA_OPTOUT_TELEMETRY='1', JINA_HIDE_SURVEY='1')
    r = subprocess.run([sys.executable, '-c', code, json.dumps(args)], capture_output=True, text=True,
                       env=env, cwd=str(REPO), timeout=1800)
    lines = [l for l in r.stdout.splitlines() if l.startswith('RESULT ')]
    if r.returncode != 0 or not lines:
        raise RuntimeError('%s worker failed:\n%s\n%s' % (kind, r.stdout[-3000:], r.stderr[-3000:]))
    return json.loads(lines[-1][len('RESULT '):])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cnn', default='resnet152', choices=['resnet18', 'resnet152', 'vgg19'])
    ap.add_argument('--requests', type=int, default=24)
    ap.add_argument('--batch', type=int, default=4, help='images per request')
    ap.add_argument('--clients', type=int, default=2, help='concurrent clients')
    ap.add_argument('--replicas', type=int, nargs='+', default=[1, 2])
    args = ap.parse_args(argv)

    from tests.vsepp_release import write_release_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = str(Path(tmp) / 'model_best.pth.tar')
        write_release_checkpoint(ckpt, args.cnn, text=False)
        rows = [('core (ImageEncoder, 1 process)', _fresh('core', ckpt, args.requests, args.batch))]
        for n in args.replicas:
            rows.append(('Deployment, gRPC, replicas=%d' % n,
                         _fresh('deployment', ckpt, n, args.requests, args.batch, args.clients)))
    base = rows[0][1]['req_per_s']
    out = ['%s, %d requests of %d uint8 224x224 images, %d concurrent clients; CPU: %s'
           % (args.cnn, args.requests, args.batch, args.clients, _cpu()), '',
           '| what | start-up (s) | requests/s | images/s | vs core |', '|---|---:|---:|---:|---:|']
    for name, r in rows:
        out.append('| %s | %.1f | %.2f | %.1f | %.2fx |' % (name, r['startup_s'], r['req_per_s'],
                                                           r['req_per_s'] * args.batch, r['req_per_s'] / base))
    sys.stdout.write('\n'.join(out) + '\n')


if __name__ == '__main__':
    main()
