"""Fingerprints of the embeddings a tree computes on fixed fixtures, to show a refactor
changed no number: run it against two trees and compare the printed sha256 lines.

    python scripts/embedding_fingerprint.py FIXTURES > now.txt
    PYTHONPATH=/path/to/other/tree python scripts/embedding_fingerprint.py FIXTURES > then.txt
    diff then.txt now.txt

FIXTURES is a folder; the first run writes random-weight release checkpoints (resnet18 legacy
format, vgg19 zip format), their vocabularies and a varied image set into it with this
repository's test helpers, later runs reuse them. The package measured is the one Python
imports (PYTHONPATH picks another tree). Covers both towers, fp32 and bf16, fast and exact
resize, channel-last input and the encode command. Nothing leaves 127.0.0.1.
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _fixtures(folder: Path) -> None:
    if (folder / 'done').exists():
        return
    sys.path.insert(0, str(REPO))
    from tests.support.images import write_image_set
    from tests.support.py27_pickle import vocab_words, write_py27_vocab
    from tests.support.vsepp_release import write_release_checkpoint
    write_release_checkpoint(folder / 'resnet' / 'model_best.pth.tar', cnn_type='resnet18', embed_size=64,
                             seed=3, vocab_size=40)
    write_release_checkpoint(folder / 'vgg' / 'model_best.pth.tar', cnn_type='vgg19', embed_size=32, seed=4,
                             legacy=False, torch03=False, vocab_size=40)
    for name in ('resnet', 'vgg'):
        write_py27_vocab(folder / name / 'f30k_vocab.pkl', vocab_words(36))  # 36 words + 4 special tokens
    write_image_set(folder / 'photos', seed=5)
    (folder / 'done').write_text('ok\n')
    sys.path.pop(0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('fixtures', type=Path, help='folder for the fixtures (written on first use)')
    args = ap.parse_args(argv)
    _fixtures(args.fixtures)
    import vseimageencoder
    from vseimageencoder.encoders import ImageEncoder, TextEncoder

    print('# package: %s' % Path(vseimageencoder.__file__).parent, file=sys.stderr)
    rng = np.random.RandomState(0)
    pixels = rng.randint(0, 256, (3, 3, 300, 260)).astype(np.uint8)
    floats = rng.rand(2, 3, 224, 224).astype(np.float32)
    out = {}
    for name in ('resnet', 'vgg'):
        model = str(args.fixtures / name)
        for precision in ('fp32', 'bf16'):
            for resize in ('fast', 'exact'):
                enc = ImageEncoder(model, precision=precision, resize=resize)
                out['%s %s %s uint8' % (name, precision, resize)] = enc.encode(pixels)
                out['%s %s %s float' % (name, precision, resize)] = enc.encode(floats)
            enc = ImageEncoder(model, precision=precision, channel_axis=-1)
            out['%s %s channel-last' % (name, precision)] = enc.encode(np.moveaxis(pixels, 1, -1).copy())
        out['%s text' % name] = TextEncoder(model).encode(['a dog on the beach', 'zzz unknown', 'the the'])
    photos = sorted(str(p) for p in (args.fixtures / 'photos').rglob('*') if p.is_file())
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ('fp32', 'bf16'):
            npy = os.path.join(tmp, 'e.npy')
            r = subprocess.run([sys.executable, '-m', 'vseimageencoder', 'encode', '--model-path',
                                str(args.fixtures / 'resnet'), '--precision', precision, '-o', npy] + photos,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out['encode %s (exit %d)' % (precision, r.returncode)] = np.load(npy)
    for key, value in out.items():
        print('%s  %s %s' % (hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest(), key,
                             'x'.join(map(str, value.shape))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
