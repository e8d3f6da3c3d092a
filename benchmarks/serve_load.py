"""Load on ``vseimageencoder serve``: concurrent clients searching a 100,000-row index.

    .venv/bin/python benchmarks/serve_load.py [--rows 100000] [--clients 32] [--queries 20]
                                              [--arch resnet152] [--workdir DIR]

What it does, all on 127.0.0.1:

1. writes a random-weight VSE++ checkpoint in the release layout (``--arch``, default the
   released resnet152 with 1024-d embeddings; its vocabulary beside it), ``--rows`` random
   unit vectors as EMB.npy with synthetic file names, and a few generated photos;
2. imports the vectors with ``vseimageencoder index DIR --from EMB.npy --model-path P``;
3. times the ``search`` command itself: one caption (start, model load, one query) and 21
   captions (the 20 extra ones give its time per query); the same for ``--image``;
4. starts ``vseimageencoder serve DIR`` (one worker batching concurrent queries), and again
   with ``--max-batch 1`` (queries one at a time: the plain way, for the ratio);
5. per server: ``--clients`` threads, each with its own keep-alive connection, send
   ``--queries`` caption queries (GET /api/search, k=20), then ``--queries`` photo queries
   (POST /api/search with a JPEG body, k=20). Every answer must be 200 with k results.

Prints a progress line on stderr while it runs and a Markdown table on stdout: requests,
failures, requests/s, p50/p95/max latency, next to the search command's times.
"""
import argparse
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.serving_web import VOCAB_SIZE, serving  # noqa: E402

CAPTIONS = [
    'a man riding a horse on the beach', 'two women playing with a red ball in the snow',
    'a dog running in the water', 'children playing on the street', 'a man in a red shirt',
    'two dogs playing with a ball on the beach', 'a woman riding a horse', 'snow on the street',
    'a man and a woman in the water', 'children in red shirts playing',
    'a horse on the street', 'a dog with a ball in the snow', 'two children on the beach',
    'women playing in the water', 'a red ball on the street', 'a man is playing with a dog',
    'two men riding horses in the snow', 'a woman with children on the beach',
    'a dog in a red shirt', 'the beach in the snow', 'people on the street',
]


def cpu_name() -> str:
    name = platform.processor() or 'unknown CPU'
    flags = ''
    try:
        text = Path('/proc/cpuinfo').read_text()
        name = next(line.split(':', 1)[1].strip() for line in text.splitlines() if line.startswith('model name'))
        flags = next(line for line in text.splitlines() if line.startswith('flags'))
    except (OSError, StopIteration):
        pass
    extras = [f for f in ('avx512f', 'avx512_bf16', 'amx_bf16') if ' %s ' % f in flags + ' ']
    return '%s, %d cores%s' % (name, os.cpu_count() or 0, (' (' + ', '.join(extras) + ')') if extras else '')


_last_line = [0.0]


def progress(text: str, every: float = 0.0):
    """One redrawn line on a terminal; elsewhere a line at most every ``every`` seconds."""
    if sys.stderr.isatty():
        sys.stderr.write('\r\x1b[K' + text)
    elif text and time.monotonic() - _last_line[0] >= every:
        _last_line[0] = time.monotonic()
        sys.stderr.write(text + '\n')
    sys.stderr.flush()


def cli(*args, timeout=1800):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, '-m', 'vseimageencoder'] + [str(a) for a in args], cwd=str(REPO),
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit('vseimageencoder %s failed (%d):\n%s' % (args[0], r.returncode, r.stderr[-3000:]))
    return time.perf_counter() - t0, r


def prepare(work: Path, rows: int, arch: str, embed: int):
    from tests.support.photos import write_photo
    from tests.support.py27_pickle import vocab_words, write_py27_release_checkpoint, write_py27_vocab

    model = work / 'model' / 'model_best.pth.tar'
    if not model.exists():
        progress('writing a random-weight %s checkpoint ...' % arch)
        write_py27_release_checkpoint(model, arch, embed_size=embed, word_dim=300, vocab_size=VOCAB_SIZE,
                                      seed=1)
        write_py27_vocab(model.parent / 'f30k_vocab.pkl', vocab_words(VOCAB_SIZE - 4))
    photos = [write_photo(work / 'photos' / ('photo%d.jpg' % i), 800, 600, seed=i) for i in range(8)]
    index = work / ('index-%d' % rows)
    if not index.exists():
        progress('writing %d random unit vectors ...' % rows)
        rng = np.random.default_rng(0)
        emb = rng.standard_normal((rows, embed), dtype=np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        np.save(work / 'emb.npy', emb)
        (work / 'emb.files.txt').write_text(''.join('/photos/synthetic/%07d.jpg\n' % i for i in range(rows)))
        progress('importing them: vseimageencoder index %s --from emb.npy ...' % index.name)
        took, _ = cli('index', index, '--from', work / 'emb.npy', '--model-path', model)
        progress('')
        sys.stderr.write('imported %d rows in %.1f s\n' % (rows, took))
    return model, photos, index


def search_command_times(work, index, model, photos, captions: int, images: int):
    """The search command's wall time for one query, and its time per query over a run of
    ``captions`` captions (``images`` photos): (run - one) / (n - 1)."""
    out = {}
    t1, _ = cli('search', index, CAPTIONS[0], '-k', 20, '--model-path', model)
    listing = work / 'captions.txt'
    listing.write_text(''.join(CAPTIONS[i % len(CAPTIONS)] + '\n' for i in range(captions)))
    tn, _ = cli('search', index, '--captions-file', listing, '-k', 20, '--model-path', model)
    out['caption'] = (t1, (tn - t1) / (captions - 1), captions)
    t1, _ = cli('search', index, '--image', photos[0], '-k', 20, '--model-path', model)
    more = []
    for i in range(images):
        more += ['--image', photos[i % len(photos)]]
    tn, _ = cli('search', index, *more, '-k', 20, '--model-path', model)
    out['photo'] = (t1, (tn - t1) / (images - 1), images)
    return out


def load(url: str, kind: str, clients: int, queries: int, photos, label: str):
    """``clients`` threads x ``queries`` requests of ``kind``; latencies and failures."""
    host, port = url[len('http://'):].split(':')
    bodies = [p.read_bytes() for p in photos]
    latencies, failures = [], []
    lock = threading.Lock()
    done = [0]
    start_gate = threading.Barrier(clients + 1)

    def client(c):
        conn = http.client.HTTPConnection(host, int(port), timeout=600)
        start_gate.wait()
        for q in range(queries):
            i = c * queries + q
            t0 = time.perf_counter()
            try:
                if kind == 'caption':
                    from urllib.parse import urlencode
                    conn.request('GET', '/api/search?' + urlencode({'q': CAPTIONS[i % len(CAPTIONS)], 'k': 20}))
                else:
                    conn.request('POST', '/api/search?k=20', bodies[i % len(bodies)],
                                 {'Content-Type': 'image/jpeg'})
                resp = conn.getresponse()
                body = resp.read()
                ok = resp.status == 200 and len(json.loads(body)['results']) == 20
                why = None if ok else 'HTTP %d: %s' % (resp.status, body[:200])
            except Exception as e:  # counted, reported, and the connection renewed
                why = '%s: %s' % (type(e).__name__, e)
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=600)
            took = time.perf_counter() - t0
            with lock:
                done[0] += 1
                if why:
                    failures.append(why)
                else:
                    latencies.append(took)
        conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    total = clients * queries
    while any(t.is_alive() for t in threads):
        time.sleep(0.5)
        elapsed = time.perf_counter() - t0
        progress('%s, %s: %d/%d requests, %d failed, %.1f req/s, %.0f s'
                 % (label, kind, done[0], total, len(failures), done[0] / max(elapsed, 1e-9), elapsed),
                 every=10)
    wall = time.perf_counter() - t0
    progress('')
    lat = sorted(latencies)
    pct = (lambda p: lat[min(len(lat) - 1, int(round(p / 100.0 * (len(lat) - 1))))] if lat else float('nan'))
    return {'requests': total, 'failed': len(failures), 'first_failures': failures[:3], 'wall_s': wall,
            'rps': total / wall, 'p50_ms': 1000 * pct(50), 'p95_ms': 1000 * pct(95),
            'max_ms': 1000 * (lat[-1] if lat else float('nan')),
            'mean_ms': 1000 * (statistics.mean(lat) if lat else float('nan'))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--rows', type=int, default=100_000)
    ap.add_argument('--clients', type=int, default=32)
    ap.add_argument('--queries', type=int, default=20, help='per client and kind')
    ap.add_argument('--arch', default='resnet152')
    ap.add_argument('--embed-size', type=int, default=1024)
    ap.add_argument('--workdir', default=None, help='reused between runs (default: a new temp dir)')
    ap.add_argument('--no-plain', action='store_true', help='skip the --max-batch 1 server')
    args = ap.parse_args()
    import tempfile

    started = time.perf_counter()
    work = Path(args.workdir or tempfile.mkdtemp(prefix='serve-load-'))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _measure(args, work, started)
    finally:
        if args.workdir is None:  # a run's photos and index are hundreds of MB
            shutil.rmtree(str(work), ignore_errors=True)


def _measure(args, work, started):
    model, photos, index = prepare(work, args.rows, args.arch, args.embed_size)
    progress('timing the search command ...')
    cmd = search_command_times(work, index, model, photos, args.clients * args.queries,
                               max(2, args.clients * args.queries // 10))
    progress('')
    results = {}
    servers = [('serve', [])] + ([] if args.no_plain else [('serve --max-batch 1', ['--max-batch', '1'])])
    for label, extra in servers:
        progress('starting %s ...' % label)
        t0 = time.perf_counter()
        with serving(index, model, extra=extra, log_dir=work, start_timeout=900) as server:
            start = time.perf_counter() - t0
            for kind in ('caption', 'photo'):
                results[(label, kind)] = load(server.url, kind, args.clients, args.queries, photos, label)
            results[(label, 'start')] = start
    total = time.perf_counter() - started

    print('CPU: %s; torch threads: default; %d rows x %d-d, %s random weights; %d clients x %d queries '
          'per kind, k=20.\n' % (cpu_name(), args.rows, args.embed_size, args.arch, args.clients, args.queries))
    print('| what | requests | failed | requests/s | p50 ms | p95 ms | max ms |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    for label, _ in servers:
        for kind in ('caption', 'photo'):
            r = results[(label, kind)]
            print('| `%s`, %s queries | %d | %d | %.1f | %.0f | %.0f | %.0f |' % (
                label, kind, r['requests'], r['failed'], r['rps'], r['p50_ms'], r['p95_ms'], r['max_ms']))
    for kind in ('caption', 'photo'):
        one, per, n = cmd[kind]
        print('| `search` command, one %s (start, model load, query) | 1 | 0 | %.2f | %.0f | | |'
              % (kind, 1 / one, 1000 * one))
        print('| `search` command, %d %ss in one run: time per query beyond the first | %d | 0 | %s | %.0f | | |'
              % (n, kind, n, ('%.1f' % (1 / per)) if per > 0 else 'n/a', 1000 * per))
    if not args.no_plain:
        for kind in ('caption', 'photo'):
            print('\n%s queries: batched serve %.1fx the requests/s of one-at-a-time serve'
                  % (kind, results[('serve', kind)]['rps'] / results[('serve --max-batch 1', kind)]['rps']),
                  end='')
        print()
    print('\nserver start (towers loaded, index opened, first /healthz): %.1f s; whole run %.0f s'
          % (results[('serve', 'start')], total))
    failed = sum(results[(label, kind)]['failed'] for label, _ in servers for kind in ('caption', 'photo'))
    for label, _ in servers:
        for kind in ('caption', 'photo'):
            for f in results[(label, kind)]['first_failures']:
                print('failure (%s, %s): %s' % (label, kind, f), file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
