"""Captions and images in one space, through real jina 0.9.33 Flows and the command line.

The checkpoint and vocabulary are written as the releases were (Python 2.7 pickles, legacy
torch format, GPU storage locations). Expected results are computed independently: the
text tower step by step (tests.vsepp_release.reference_text_embed), the image tower the
straightforward way (reference_embed), and the top-k by brute force.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.integration.fresh_process import run_in_fresh_process
from tests.py27_pickle import vocab_words, write_py27_release_checkpoint, write_py27_vocab
from tests.vsepp_release import reference_embed, reference_text_embeds

REPO = Path(__file__).resolve().parent.parent.parent
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


def _expected_images(release, paths):
    from vseimageencoder.images.transform import transform
    _, rel, _ = release
    return reference_embed(rel.backbone, rel.fc, np.stack([transform(p) for p in paths]))


def _brute_force(queries, rows, k):
    scores = queries @ rows.T / np.linalg.norm(rows, axis=1) / np.linalg.norm(queries, axis=1)[:, None]
    return [[(float(s[j]), j) for j in np.argsort(-s, kind='stable')[:k]] for s in scores]


# --------------------------------------------------------------------------- the text pod

def _text_flow(text_yaml, workdir, captions, parallel):
    os.chdir(workdir)
    from jina import Document
    from jina.flow import Flow

    got = {}

    def on_done(resp):
        for d in resp.docs:
            got[d.text] = d.embedding.copy()

    with Flow().add(uses=str(text_yaml), parallel=parallel) as f:
        f.index([Document(text=c) for c in captions], on_done=on_done, request_size=3)
    return got


def test_text_pod_in_flow_parallel_2(release, tmp_path):
    folder = release[0]
    # The repository's own text.yml; model_path 'pretrained' found in the working directory.
    os.symlink(str(folder), str(tmp_path / 'pretrained'))
    captions = [c for c in CAPTIONS if c]  # jina 0.9 drops a Document whose text is empty
    got = run_in_fresh_process(_text_flow, REPO / 'text.yml', tmp_path, captions, 2, timeout=300)
    expected = _expected_text(release, captions)
    assert sorted(got) == sorted(captions)
    for c, e in zip(captions, expected):
        assert got[c].shape == (EMBED,) and got[c].dtype == np.float32
        np.testing.assert_allclose(got[c], e, atol=2e-6)


# --------------------------------------------------------------------------- cross-modal Flows

def _example():
    spec = importlib.util.spec_from_file_location('cross_modal', str(REPO / 'examples/cross_modal/cross_modal.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _images_by_caption(photos, captions, workspace, model_path, k):
    ex = _example()
    n = ex.index_images(photos, workspace, model_path)
    return n, ex.search_by_captions(captions, workspace, k, model_path)


def _captions_by_image(captions, photos, workspace, model_path, k):
    ex = _example()
    n = ex.index_captions(captions, workspace, model_path)
    return n, ex.search_by_images(photos, workspace, k, model_path)


def test_images_by_caption_matches_brute_force(release, photos, tmp_path):
    k = 3
    queries = CAPTIONS[:5]
    n, found = run_in_fresh_process(_images_by_caption, [str(p) for p in photos], queries,
                                    str(tmp_path / 'ws'), str(release[0]), k, timeout=400)
    assert n == len(photos)
    expected = _brute_force(_expected_text(release, queries), _expected_images(release, photos), k)
    for hits, want in zip(found, expected):
        assert [uri for _, uri in hits] == [str(photos[j].resolve()) for _, j in want]
        np.testing.assert_allclose([s for s, _ in hits], [s for s, _ in want], atol=2e-5)


def test_captions_by_image_matches_brute_force(release, photos, tmp_path):
    k = 4
    indexed = [c for c in CAPTIONS if c]
    queries = photos[:3]
    n, found = run_in_fresh_process(_captions_by_image, indexed, [str(p) for p in queries],
                                    str(tmp_path / 'ws'), str(release[0]), k, timeout=400)
    assert n == len(indexed)
    expected = _brute_force(_expected_images(release, queries), _expected_text(release, indexed), k)
    for hits, want in zip(found, expected):
        assert [text for _, text in hits] == [indexed[j] for _, j in want]
        np.testing.assert_allclose([s for s, _ in hits], [s for s, _ in want], atol=2e-5)


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
