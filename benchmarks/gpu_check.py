"""Everything GPU-specific, checked and measured in one run of a few minutes.

    .venv/bin/python benchmarks/gpu_check.py                # on a machine with a CUDA GPU
    .venv/bin/python benchmarks/gpu_check.py --photos 32 --device cuda:1

Without a usable CUDA device it says so on stdout and exits 0 (nothing to check).
Exit status 1 when a check fails, 0 when all pass.

What it does (ResNet-152 with random weights in the VSE++ release layout, whose batch-norm
statistics are first re-estimated on the photos, so that activations have a trained
network's scale: with the initial statistics they grow past fp16's 65504):

1. **fp32 on CUDA against fp32 on the CPU**: the same transformed photos; worst cosine must
   be >= 0.99999 (with torch's defaults, TF32 convolutions included, and with TF32 off).
2. **fp16 and bf16 against fp32 on CUDA**: worst cosine >= 0.999; and what ``auto`` picks.
3. **Tower images/s** at batch 1, 32 and 256 with ``auto``, against the GPU's fp16
   matrix-multiply ceiling measured in the same run (8192^3 matmuls) and the tower's FLOPs
   counted by torch: achieved FLOP/s / ceiling.
4. **encode end to end on 12 MP JPEGs**: ``embed_files`` with the tower on CUDA, whose
   JPEGs are decoded on the device (:mod:`vseimageencoder.pipeline.cuda_decode`, nvJPEG) and
   transformed there; against the same tower fed by the CPU lanes, and the worst cosine
   of the GPU-decoded embeddings to the exact transform on the CPU (>= 0.999).

Prints markdown tables (with the GPU, driver, torch and CPU named) and a one-line verdict.
"""
import argparse
import copy
import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def cuda_status():
    """``(usable, why)``: whether torch can run on a CUDA device here, and if not, why."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a dependency
        return False, 'torch is not importable (%s)' % e
    if torch.version.cuda is None:
        return False, 'this torch (%s) is built without CUDA' % torch.__version__
    if not torch.cuda.is_available():
        return False, 'torch %s (CUDA %s) sees no usable CUDA GPU or driver' % (torch.__version__,
                                                                            torch.version.cuda)
    return True, '%d CUDA device(s)' % torch.cuda.device_count()


def _cos(a, b):
    import numpy as np
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


def _photos(folder, n, size=(4000, 3000), distinct=8):
    from tests.support.photos import write_photo
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / ('%03d.jpg' % i)
        if i < distinct:
            write_photo(p, size[0], size[1], seed=200 + i, orientation=6 if i == 3 else 0)
        else:
            shutil.copyfile(str(paths[i % distinct]), str(p))
        paths.append(p)
    return paths


def _recalibrate(tower, x, device):
    """Re-estimate the backbone's batch-norm statistics on ``x`` (cumulative average)."""
    import torch
    cnn = tower.cnn.to(device)
    for m in cnn.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    cnn.train()
    with torch.no_grad():
        for i in range(0, x.shape[0], 16):
            cnn(x[i:i + 16].to(device))
    cnn.eval().cpu()
    return tower


def _time(fn, sync, min_s=1.0):
    fn()
    sync()
    n, t = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        sync()
        el = time.perf_counter() - t
        if el >= min_s and n >= 3:
            return el / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--photos', type=int, default=64, help='12 MP JPEGs for the end-to-end run')
    ap.add_argument('--batches', type=int, nargs='+', default=[1, 32, 256])
    ap.add_argument('--cnn', default='resnet152')
    ap.add_argument('--cpu-smoke', action='store_true',
                    help='run every step on the CPU with tiny sizes, to test this script itself '
                         'where no GPU is at hand (its figures mean nothing)')
    args = ap.parse_args(argv)

    usable, why = cuda_status()
    if args.cpu_smoke:
        args.device, args.photos, args.batches, args.cnn = 'cpu', 8, [1, 2], 'resnet18'
        args.size, args.matmul = (800, 600), 512
    else:
        args.size, args.matmul = (4000, 3000), 8192
    if not usable and not args.cpu_smoke:
        sys.stdout.write('gpu_check: no CUDA device here (%s): nothing to check.\n' % why)
        return 0

    import numpy as np
    import torch

    from benchmarks.bench import _machine
    from tests.support.vsepp_release import write_release_checkpoint
    from vseimageencoder.pipeline.embed_files import embed_files
    from vseimageencoder.release.checkpoint import load_tower
    from vseimageencoder.model.inference import InferenceTower, resolve_precision
    from vseimageencoder.images.transform import transform

    dev = torch.device(args.device)
    if dev.type == 'cuda':
        sync = lambda: torch.cuda.synchronize(dev)  # noqa: E731
        props = torch.cuda.get_device_properties(dev)
        gpu = '%s (%.0f GiB, compute %d.%d), CUDA %s' % (props.name, props.total_memory / 2 ** 30,
                                                          props.major, props.minor, torch.version.cuda)
    else:
        sync = lambda: None  # noqa: E731
        gpu = 'none: --cpu-smoke, every step on the CPU, figures meaningless'
    lines = ['GPU: %s; torch %s. Host: %s. %s.'
             % (gpu, torch.__version__, _machine(), time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())), '']
    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)
        return 'pass' if ok else '**FAIL**'

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        paths = _photos(tmp / 'photos', args.photos, args.size)
        ckpt = tmp / 'model_best.pth.tar'
        write_release_checkpoint(ckpt, args.cnn, text=False, seed=5)
        x = torch.from_numpy(np.stack([transform(p, resize='exact') for p in paths[:8]]))
        x = torch.cat([x, x.flip(3), x.flip(2), x.transpose(2, 3)])  # 32 distinct inputs
        base, _ = load_tower(str(ckpt))
        base = _recalibrate(base, x, dev)
        lines.append('Prepared in %.1f s (%d photos written, batch norms re-estimated on 32 inputs).'
                     % (time.perf_counter() - t0, len(paths)))

        def tower(precision, device):
            return InferenceTower(copy.deepcopy(base), precision, device)

        # 1. fp32 CUDA vs fp32 CPU
        cpu = tower('fp32', 'cpu')(x).numpy()
        rows = ['', '| check | worst cosine | bar | result |', '|---|---:|---:|---|']
        tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        for label, allow in (('fp32 CUDA (torch defaults, cuDNN TF32 %s) vs fp32 CPU' % ('on' if tf32[1] else 'off'), None),
                             ('fp32 CUDA, TF32 off vs fp32 CPU', False)):
            if allow is not None:
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
            c = _cos(tower('fp32', dev)(x).numpy(), cpu)
            rows.append('| %s | %.7f | 0.99999 | %s |' % (label, c, check(c >= 0.99999, label)))
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        # 2. fp16 / bf16 vs fp32 on CUDA
        ref = tower('fp32', dev)(x).numpy()
        for prec in ('fp16', 'bf16'):
            try:
                c = _cos(tower(prec, dev)(x).numpy(), ref)
                rows.append('| %s CUDA vs fp32 CUDA | %.6f | 0.999 | %s |' % (prec, c, check(c >= 0.999, prec)))
            except (ValueError, RuntimeError) as e:
                rows.append('| %s CUDA vs fp32 CUDA | %s | 0.999 | %s |' % (prec, str(e).splitlines()[0][:80],
                                                                          check(False, prec)))
        rows.append('| `auto` on %s resolves to | %s | | |' % (dev, resolve_precision('auto', dev)))
        lines += rows

        # 3. throughput vs the fp16 matmul ceiling
        m = args.matmul
        a = torch.randn(m, m, device=dev, dtype=torch.float16)
        b = torch.randn(m, m, device=dev, dtype=torch.float16)
        ceiling = 2 * m ** 3 / _time(lambda: a @ b, sync, 0.2 if args.cpu_smoke else 1.0)
        del a, b
        model = tower('auto', dev)
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as fc:
            model(x[:1].to(dev))
        flops = fc.get_total_flops()
        lines += ['', 'fp16 matmul ceiling measured: %.1f TFLOP/s; %s counts %.2f GFLOP per image.'
                  % (ceiling / 1e12, args.cnn, flops / 1e9), '',
                  '| batch | tower images/s (auto = %s, input already on the GPU) | achieved TFLOP/s | x ceiling |'
                  % model.precision, '|---:|---:|---:|---:|']
        for bs in args.batches:
            xb = x.repeat((bs + 31) // 32, 1, 1, 1)[:bs].to(dev)
            with torch.inference_mode():
                s = _time(lambda: model.tower.cnn(xb.to(model.dtype).contiguous(memory_format=torch.channels_last)),
                          sync, 0.2 if args.cpu_smoke else 1.0)
            lines.append('| %d | %.0f | %.1f | %.2fx |' % (bs, bs / s, bs / s * flops / 1e12, bs / s * flops / ceiling))

        # 4. encode end to end on 12 MP JPEGs: embed_files sends a CUDA tower's JPEGs to the
        # device decoder; the CPU lanes are called directly for the comparison.
        from vseimageencoder.pipeline.batch_threads import embed_in_lanes
        from vseimageencoder.pipeline.thread_budget import thread_budget
        budget = thread_budget()
        exact = []
        embed_files(tower('fp32', 'cpu'), paths[:8], lambda r, p: exact.append(r), 8, 'exact', 0)
        exact = np.concatenate(exact)
        lines += ['', '| encode, %d x %dx%d JPEGs, auto, batch 32 | images/s | worst cosine to exact (CPU, fp32) |'
                  % ((len(paths),) + tuple(args.size)), '|---|---:|---:|']
        for label, run in (
                ('JPEGs decoded on the GPU (nvJPEG), transform on the GPU',
                 lambda w: embed_files(model, paths, w, 32, 'fast', None)),
                ('JPEGs decoded on the CPU (lanes, fast), tower on the GPU',
                 lambda w: embed_in_lanes(model, paths, functools.partial(transform, resize='fast'), w, 32,
                                          budget.reader_threads, budget.torch_threads))):
            out = []
            run(lambda r, p: out.append(r))  # warm-up (nvJPEG handles, cuDNN plans)
            out = []
            t = time.perf_counter()
            run(lambda r, p: out.append(r))
            rate = len(paths) / (time.perf_counter() - t)
            c = _cos(np.concatenate(out)[:8], exact)
            lines.append('| %s | %.1f | %.6f %s |' % (label, rate, c, check(c >= 0.999, label)))
    lines += ['', 'gpu_check: %s' % ('all checks pass' if not failures else 'FAILED: ' + '; '.join(failures))]
    sys.stdout.write('\n'.join(lines) + '\n')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
