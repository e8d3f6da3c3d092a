"""examples/cross_modal/cross_modal.py as users run it: results alone on stdout
(jina 0.9.33's log lines on stderr), a query image that cannot be read and a workspace that
was never indexed are errors that create nothing."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.py27_pickle import vocab_words, write_py27_release_checkpoint, write_py27_vocab

pytestmark = pytest.mark.jina09

REPO = Path(__file__).resolve().parent.parent.parent
SCRIPT = REPO / 'examples' / 'cross_modal' / 'cross_modal.py'


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp('examples') / 'pretrained'
    write_py27_release_checkpoint(folder / 'model_best.pth.tar', 'resnet18', embed_size=16,
                                  word_dim=8, num_layers=1, vocab_size=24, seed=4)
    write_py27_vocab(folder / 'f30k_vocab.pkl', vocab_words(20))
    return folder


def _run(*args, cwd):
    return subprocess.run([sys.executable, str(SCRIPT)] + [str(a) for a in args], cwd=str(cwd),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=400)


def test_results_alone_on_stdout(model, tmp_path):
    from PIL import Image
    photos = tmp_path / 'photos'
    photos.mkdir()
    rng = np.random.RandomState(0)
    for i in range(3):
        Image.fromarray((rng.rand(40, 50, 3) * 255).astype(np.uint8)).save(str(photos / ('%d.png' % i)))
    r = _run('index-images', photos, '--workspace', 'ws', '--model-path', model, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout == ''
    assert 'indexed 3 images' in r.stderr and 'Flow' in r.stderr  # jina's log lines, on stderr
    r = _run('query-by-caption', 'a dog', 'two men', '--workspace', 'ws', '--model-path', model,
             '-k', 2, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert [lines[0], lines[3]] == ['# a dog', '# two men'] and len(lines) == 6, r.stdout
    for line in lines[1:3] + lines[4:]:
        score, path = line.split('\t')
        assert -1 <= float(score) <= 1 and Path(path).parent == photos.resolve()
    assert 'Flow' in r.stderr


def test_query_image_that_is_missing_is_an_error(model, tmp_path):
    r = _run('query-by-image', tmp_path / 'nope.jpg', '--workspace', tmp_path / 'ws',
             '--model-path', model, cwd=tmp_path)
    assert r.returncode == 2
    assert 'nope.jpg' in r.stderr and r.stdout == ''
    assert not (tmp_path / 'ws').exists()


@pytest.mark.parametrize('command,query,kind', [('query-by-caption', 'a dog', 'images'),
                                                ('query-by-image', None, 'captions')])
def test_query_of_a_workspace_never_indexed_says_so(model, tmp_path, command, query, kind):
    if query is None:
        from PIL import Image
        query = tmp_path / 'q.png'
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(str(query))
    r = _run(command, query, '--workspace', tmp_path / 'never', '--model-path', model, cwd=tmp_path)
    assert r.returncode == 2
    assert 'holds no index of %s' % kind in r.stderr and r.stdout == ''
    assert not (tmp_path / 'never').exists()
