"""Throughput, start-up time and peak memory of the encoder against a plain implementation.

    .venv/bin/python benchmarks/bench.py                  # full table (about 15-25 min on 2 cores)
    .venv/bin/python benchmarks/bench.py --models resnet152 --batches 8 --precisions fp32 auto

Checkpoints with random weights in the VSE++ release layout are written to a temporary
folder. "plain" is the straightforward way: a torchvision model built with its random init,
torch.load, load_state_dict, then an eager fp32 NCHW forward with the VSE++ head. Every
configuration runs in its own fresh process (so peak RSS is its own, and start-up is cold),
and each row is measured in the same run as its plain baseline. Prints a markdown table.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


# --------------------------------------------------------------------------- workers

def _plain_load(ckpt, cnn_type):
    import torch
    import torchvision

    from tests.support.vsepp_release import cut_as_vsepp

    net = getattr(torchvision.models, cnn_type)(weights=None)
    width = cut_as_vsepp(net, cnn_type)
    sd = torch.load(ckpt, map_location='cpu', weights_only=False)['model'][0]
    cnn_sd = {}
    for k, v in sd.items():
        if k.startswith('cnn.'):
            k = k[4:].replace('module.', '')
            if k.startswith('classifier.1.'):
                k = 'classifier.0.' + k[len('classifier.1.'):]
            elif k.startswith('classifier.4.'):
                k = 'classifier.3.' + k[len('classifier.4.'):]
            cnn_sd[k] = v
    net.load_state_dict(cnn_sd)
    fc = torch.nn.Linear(width, 1024)
    fc.load_state_dict({'weight': sd['fc.weight'], 'bias': sd['fc.bias']})
    net.eval()

    def run(x):
        with torch.no_grad():
            f = torch.nn.functional.normalize(net(x), dim=1)
            return torch.nn.functional.normalize(fc(f), dim=1)
    return run


def _ours_load(ckpt, precision):
    from vseimageencoder.release.checkpoint import load_tower
    from vseimageencoder.model.inference import InferenceTower

    tower, _ = load_tower(ckpt)
    model = InferenceTower(tower, precision)
    return model, model.precision


def worker(args):
    """One configuration in this fresh process; prints one JSON line."""
    import numpy as np
    import torch

    t0 = time.perf_counter()
    if args.impl == 'plain':
        run, resolved = _plain_load(args.ckpt, args.cnn_type), 'fp32'
    else:
        run, resolved = _ours_load(args.ckpt, args.precision)
    load_s = time.perf_counter() - t0
    result = {'load_s': load_s, 'resolved': resolved, 'throughput': {}, 'outputs': {}}
    rng = np.random.RandomState(0)
    for b in args.batches:
        x = torch.from_numpy(rng.randn(b, 3, 224, 224).astype(np.float32))
        try:
            out = run(x)  # warm-up (allocations, oneDNN primitive creation)
        except ValueError as e:  # e.g. fp16 overflow: reported, not timed
            result['error'] = str(e)
            break
        n, start = 0, time.perf_counter()
        while True:
            run(x)
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= args.min_time or n >= args.max_iters:
                break
        result['throughput'][str(b)] = n * b / elapsed
        result['outputs'][str(b)] = out[:2].float().numpy().tolist()
    result['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print('RESULT ' + json.dumps(result))


def load_worker(args):
    """Cold start in this fresh process: build the tower and load the checkpoint (what the
    plain way does: random init, torch.load, load_state_dict); then, for ours, the one-time
    inference preparation (BN folding, channels-last), reported apart."""
    import torch  # noqa: F401  (imports are not part of what is compared)
    import torchvision  # noqa: F401
    from vseimageencoder.release.checkpoint import load_tower
    from vseimageencoder.model.inference import InferenceTower

    t0 = time.perf_counter()
    prep = 0.0
    if args.impl == 'plain':
        _plain_load(args.ckpt, args.cnn_type)
    else:
        tower, _ = load_tower(args.ckpt)
        t1 = time.perf_counter()
        InferenceTower(tower, 'fp32')
        prep = time.perf_counter() - t1
    print('RESULT ' + json.dumps({'load_s': time.perf_counter() - t0 - prep, 'prep_s': prep}))


# --------------------------------------------------------------------------- driver

def _spawn(mode, **kw):
    cmd = [sys.executable, __file__, '--worker', mode]
    for k, v in kw.items():
        if isinstance(v, list):
            cmd += ['--' + k.replace('_', '-')] + [str(x) for x in v]
        else:
            cmd += ['--' + k.replace('_', '-'), str(v)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    line = [l for l in r.stdout.splitlines() if l.startswith('RESULT ')]
    if r.returncode != 0 or not line:
        raise RuntimeError('benchmark worker failed: %s\n%s' % (' '.join(cmd), r.stderr[-3000:]))
    return json.loads(line[-1][7:])


def _cosine(a, b):
    import numpy as np
    a, b = np.asarray(a), np.asarray(b)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def _machine():
    import torch
    from vseimageencoder.model.inference import cpu_has_fast_bf16, cpu_has_fast_fp16
    cpu = platform.processor() or 'unknown CPU'
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(l.split(':', 1)[1].strip() for l in f if l.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return ('%s, %d cores, torch %s (%d threads), Python %s; bf16 hardware: %s, fp16 hardware: %s'
            % (cpu, os.cpu_count(), torch.__version__, torch.get_num_threads(),
               platform.python_version(), cpu_has_fast_bf16(), cpu_has_fast_fp16()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--models', nargs='+', default=['resnet152', 'vgg19'])
    ap.add_argument('--batches', nargs='+', type=int, default=[1, 8, 32])
    ap.add_argument('--precisions', nargs='+', default=['fp32', 'bf16', 'fp16', 'auto'])
    ap.add_argument('--min-time', type=float, default=3.0, help='seconds of timed runs per batch size')
    ap.add_argument('--max-iters', type=int, default=20)
    ap.add_argument('--load-repeats', type=int, default=5)
    ap.add_argument('--worker', choices=['run', 'load'], help=argparse.SUPPRESS)
    ap.add_argument('--impl', help=argparse.SUPPRESS)
    ap.add_argument('--ckpt', help=argparse.SUPPRESS)
    ap.add_argument('--cnn-type', help=argparse.SUPPRESS)
    ap.add_argument('--precision', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == 'run':
        return worker(args)
    if args.worker == 'load':
        return load_worker(args)

    from tests.support.vsepp_release import write_release_checkpoint

    # A progress line per fresh process (each takes seconds to minutes), and the run time.
    started, done = time.perf_counter(), [0]
    steps = len(args.models) * (1 + len(args.precisions) + 2 * args.load_repeats)

    def progress(what):
        done[0] += 1
        print('bench: [%d/%d] %s (%.0f s so far)' % (done[0], steps, what, time.perf_counter() - started),
              file=sys.stderr, flush=True)

    lines = ['Machine: %s. Date: %s.' % (_machine(), time.strftime('%Y-%m-%d')), '']
    header = '| model | implementation | precision | ' + ' | '.join('batch %d img/s (x plain)' % b for b in args.batches) \
        + ' | min cosine to plain | peak RSS MB |'
    lines += [header, '|' + '---|' * (header.count('|') - 1)]
    load_lines = ['', '| model | plain build+load s | ours build+load s | ratio | ours one-time preparation s |',
                  '|---|---|---|---|---|']
    with tempfile.TemporaryDirectory() as tmp:
        for cnn in args.models:
            ckpt = os.path.join(tmp, cnn, 'model_best.pth.tar')
            write_release_checkpoint(ckpt, cnn, legacy=True, old_vgg_keys=cnn.startswith('vgg'), seed=1)
            common = dict(ckpt=ckpt, cnn_type=cnn, batches=args.batches, min_time=args.min_time,
                          max_iters=args.max_iters)
            progress('%s plain fp32' % cnn)
            plain = _spawn('run', impl='plain', precision='fp32', **common)
            lines.append('| %s | plain (torchvision, eager NCHW) | fp32 | %s | 1 | %.0f |' % (
                cnn, ' | '.join('%.2f' % plain['throughput'][str(b)] for b in args.batches),
                plain['peak_rss_mb']))
            for prec in args.precisions:
                progress('%s VSEImageEncoder %s' % (cnn, prec))
                ours = _spawn('run', impl='ours', precision=prec, **common)
                if 'error' in ours:
                    lines.append('| %s | VSEImageEncoder | %s | %s | - | %.0f |' % (
                        cnn, prec, ' | '.join('error: %s' % ours['error'].split(';')[0]
                                              for _ in args.batches), ours['peak_rss_mb']))
                    continue
                cos = min(_cosine(ours['outputs'][str(b)], plain['outputs'][str(b)]) for b in args.batches)
                label = prec if prec != 'auto' else 'auto (→ %s)' % ours['resolved']
                lines.append('| %s | VSEImageEncoder | %s | %s | %.6f | %.0f |' % (
                    cnn, label, ' | '.join('%.2f (%.2fx)' % (ours['throughput'][str(b)],
                                                            ours['throughput'][str(b)] / plain['throughput'][str(b)])
                                           for b in args.batches), cos, ours['peak_rss_mb']))
                print(lines[-1], file=sys.stderr)
            pl = statistics.median((progress('%s start-up, plain' % cnn),
                                    _spawn('load', impl='plain', ckpt=ckpt, cnn_type=cnn))[1]['load_s']
                                   for _ in range(args.load_repeats))
            ours_runs = [(progress('%s start-up, ours' % cnn),
                          _spawn('load', impl='ours', ckpt=ckpt, cnn_type=cnn))[1]
                         for _ in range(args.load_repeats)]
            ol = statistics.median(r['load_s'] for r in ours_runs)
            op = statistics.median(r['prep_s'] for r in ours_runs)
            load_lines.append('| %s | %.2f | %.2f | %.2f | %.2f |' % (cnn, pl, ol, ol / pl, op))
    print('\n'.join(lines + load_lines))
    print('bench: done in %.0f s' % (time.perf_counter() - started), file=sys.stderr)


if __name__ == '__main__':
    main()
