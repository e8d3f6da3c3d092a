"""Peak memory of hostile files: the package's readers against the plain library calls.

    .venv/bin/python benchmarks/hostile_inputs.py    # about two minutes on a busy 2-core machine

Each case runs in a child process of its own and reports that process's peak resident
memory (VmHWM) and what happened, for:

- a 12,500 x 12,500 all-black RGB PNG of about 0.5 MB (just under Pillow's bomb limit):
  plain ``PIL.Image.open(path).convert('RGB')`` against ``images.transform.transform(path)``;
- a zip checkpoint whose one storage record is 512 MiB of zeros, deflated to about 0.5 MB:
  plain ``torch.load(weights_only=True)`` against ``checkpoint.read_checkpoint``;
- a checkpoint whose fc.weight is a stride-0 view claiming 100,000 x 4,096 floats (1.6 GB)
  on 4,096 stored ones, with ``embed_size=100000``: torch.load followed by building the
  tower it describes (a ``Linear(4096, 100000)``) against ``checkpoint.load_tower``.

The ``import`` row is the baseline: the peak of a process that only imports the readers
(torch and Pillow; the package, which pulls in jina 0.9 where installed).

It prints each case as it finishes. Plain cases take up to 2 GB for a moment.
"""
import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent('''
    import sys
    def peak_mb():
        for line in open('/proc/self/status'):
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) // 1024
    case, how, path = sys.argv[1:4]
    try:
        if case == 'import':  # the baseline: what importing the readers alone takes
            if how == 'plain':
                import torch, PIL.Image
            else:
                import vseimageencoder.release.checkpoint, vseimageencoder.images.read
            out = 'imported'
        elif case == 'png' and how == 'plain':
            from PIL import Image
            Image.open(path).convert('RGB')
            out = 'decoded'
        elif case == 'png':
            from vseimageencoder.images.transform import transform
            transform(path)
            out = 'decoded'
        elif how == 'plain':
            import torch
            obj = torch.load(path, map_location='cpu', weights_only=True)
            if case == 'stride0':
                fc = obj['model'][0]['fc.weight']
                lin = torch.nn.Linear(fc.shape[1], fc.shape[0])
                lin.weight.data.copy_(fc)
            out = 'loaded'
        else:
            from vseimageencoder.release import checkpoint
            (checkpoint.load_tower if case == 'stride0' else checkpoint.read_checkpoint)(path)
            out = 'loaded'
    except Exception as e:
        out = type(e).__name__
    print('%s %d' % (out, peak_mb()))
''')


def write_png(path: Path, side: int = 12500) -> Path:
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = bytes(1 + 3 * side)
    body = b''.join(z.compress(row) for _ in range(side)) + z.flush()
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', side, side, 8, 2, 0, 0, 0))
                     + chunk(b'IDAT', body) + chunk(b'IEND', b''))
    return path


def write_deflated_zip(path: Path, mib: int = 512) -> Path:
    import io
    import pickle
    from collections import OrderedDict

    import torch

    n = (mib << 20) // 4

    class Storage:
        pass

    class Tensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (Storage(), 0, (n,), (1,), False, OrderedDict()))

    f = io.BytesIO()
    p = pickle.Pickler(f, protocol=2)
    p.persistent_id = lambda o: ('storage', torch.FloatStorage, '0', 'cpu', n) if isinstance(o, Storage) else None
    p.dump({'model': [{'fc.weight': Tensor()}], 'opt': {'data_name': 'f30k_precomp'}})
    with zipfile.ZipFile(str(path), 'w') as z:
        z.writestr('archive/data.pkl', f.getvalue())
        z.writestr('archive/byteorder', 'little')
        info = zipfile.ZipInfo('archive/data/0')
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, 'w', force_zip64=True) as w:
            block = bytes(1 << 20)
            for _ in range(mib):
                w.write(block)
        z.writestr('archive/version', '3\n')
    return path


def write_stride0(path: Path) -> Path:
    import torch

    torch.save({'epoch': 1, 'model': [{'fc.weight': torch.zeros(4096).expand(100000, 4096),
                                       'fc.bias': torch.zeros(1).expand(100000)}],
                'opt': {'data_name': 'f30k_precomp', 'embed_size': 100000, 'img_dim': 4096}},
               str(path), _use_new_zipfile_serialization=False)
    return path


def main():
    argparse.ArgumentParser(description=__doc__.split('\n')[0]).parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = {'import': tmp / 'none', 'png': write_png(tmp / 'huge.png'), 'zip': write_deflated_zip(tmp / 'deflated.pth'),
                 'stride0': write_stride0(tmp / 'stride0.pth')}
        sys.stdout.write('%-9s %9s  %-28s %-34s\n' % ('case', 'file MB', 'plain: outcome, peak MB',
                                                     'vseimageencoder: outcome, peak MB'))
        for case, path in files.items():
            cells = []
            for how in ('plain', 'package'):
                r = subprocess.run([sys.executable, '-c', CHILD, case, how, str(path)], cwd=str(REPO),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
                out = r.stdout.split() if r.returncode == 0 else ['exit %d' % r.returncode, '-1']
                cells.append('%s, %s' % (out[0], out[1]))
            size = path.stat().st_size / 1e6 if path.exists() else 0.0
            sys.stdout.write('%-9s %9.2f  %-28s %-34s\n' % (case, size, cells[0], cells[1]))
            sys.stdout.flush()
    sys.stdout.write('(%.0f s)\n' % (time.monotonic() - start))


if __name__ == '__main__':
    main()
