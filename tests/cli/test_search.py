"""`vseimageencoder encode` then `search` over the .npy pair, as users run them, against
expected results computed independently: the text tower step by step
(tests.support.vsepp_release.reference_text_embed) and the top-k by brute force. The
checkpoint and vocabulary are written as the releases were (Python 2.7 pickles, legacy torch
format, GPU storage locations). The same release and photos serve the jina 0.9 Flows of
tests/jina09/test_cross_modal.py."""
import subprocess
import sys

import numpy as np
import pytest

from tests.support.py27_pickle import vocab_words, write_py27_release_checkpoint, write_py27_vocab
from tests.support.vsepp_release import reference_text_embeds

VOCAB_SIZE = 44
EMBED = 32
CAPTIONS = ['a man riding a horse on the beach', 'two women playing with a ball', 'a dog in the snow',
            'children in the street', 'a red shirt', 'caf\u00e9 cr\u00e8me', 'a zebra', '']


@pytest.fixture(scope='module')
def release(tmp_path_factory):
    folder = tmp_path_factory.mktemp('xmodal') / 'pretrained'
    rel = write_py27_release_checkpoint(folder / 'model_best.pth.tar', 'resnet18', embed_size=EMBED,
                                        word_dim=8, num_layers=1, vocab_size=VOCAB_SIZE, seed=11)
    words = vocab_words(VOCAB_SIZE - 4)
    write_py27_vocab(folder / 'f30k_vocab.pkl', words)
    return folder, rel, words


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    from PIL import Image
    folder = tmp_path_factory.mktemp('photos')
    rng = np.random.RandomState(5)
    paths = []
    for i in range(7):
        h, w = 60 + 7 * i, 90 - 5 * i
        img = (rng.rand(h, w, 3) * 255).astype(np.uint8)
        p = folder / ('img%d.png' % i)
        Image.fromarray(img).save(str(p))
        paths.append(p)
    return paths


def _expected_text(release, captions):
    _, rel, words = release
    return reference_text_embeds(rel.text_sd, words, captions)


def _brute_force(queries, rows, k):
    scores = queries @ rows.T / np.linalg.norm(rows, axis=1) / np.linalg.norm(queries, axis=1)[:, None]
    return [[(float(s[j]), j) for j in np.argsort(-s, kind='stable')[:k]] for s in scores]


# --------------------------------------------------------------------------- the search command

def _cli(*args, cwd):
    return subprocess.run([sys.executable, '-m', 'vseimageencoder', *map(str, args)], cwd=str(cwd),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=300)


def test_search_command(release, photos, tmp_path):
    folder = release[0]
    r = _cli('encode', *photos, '--model-path', folder, '-o', tmp_path / 'idx.npy', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    files = (tmp_path / 'idx.files.txt').read_text().splitlines()[1:]  # after the header
    rows = np.load(str(tmp_path / 'idx.npy'))

    r = _cli('search', tmp_path / 'idx.npy', CAPTIONS[0], '-k', 3, '--model-path', folder, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    want = _brute_force(_expected_text(release, CAPTIONS[:1]), rows, 3)[0]
    assert r.stdout == ''.join('%.4f\t%s\n' % (s, files[j]) for s, j in want)

    # Several captions, one model load: a "# caption" line before each block.
    r = _cli('search', tmp_path / 'idx.npy', *CAPTIONS[:3], '-k', 2, '--model-path', folder, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0::3] == ['# ' + c for c in CAPTIONS[:3]]
    want = _brute_force(_expected_text(release, CAPTIONS[:3]), rows, 2)
    assert [l for i, l in enumerate(lines) if i % 3] == ['%.4f\t%s' % (s, files[j]) for w in want for s, j in w]


def test_search_command_errors(release, photos, tmp_path):
    folder = release[0]
    r = _cli('search', tmp_path / 'missing.npy', 'a dog', '--model-path', folder, cwd=tmp_path)
    assert r.returncode == 2 and 'missing.npy' in r.stderr
    np.save(str(tmp_path / 'idx.npy'), np.ones((3, EMBED), np.float32))
    r = _cli('search', tmp_path / 'idx.npy', 'a dog', '--model-path', folder, cwd=tmp_path)
    assert r.returncode == 2 and 'idx.files.txt is missing' in r.stderr
    (tmp_path / 'idx.files.txt').write_text('a.jpg\nb.jpg\n')
    r = _cli('search', tmp_path / 'idx.npy', 'a dog', '--model-path', folder, cwd=tmp_path)
    assert r.returncode == 2 and '3 rows' in r.stderr and 'lists 2 files' in r.stderr
    np.save(str(tmp_path / 'idx.npy'), np.ones((2, 7), np.float32))
    r = _cli('search', tmp_path / 'idx.npy', 'a dog', '--model-path', folder, cwd=tmp_path)
    assert r.returncode == 2 and '7-d' in r.stderr and '%d-d' % EMBED in r.stderr
