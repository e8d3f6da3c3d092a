"""Real jina 0.9.33 Flows: index and search documents with image blobs through the encoder."""
import os
from pathlib import Path

import numpy as np
import pytest

from tests.support.fresh_process import run_in_fresh_process
from tests.support.vsepp_release import reference_embed

pytestmark = pytest.mark.jina09

N_DOCS = 10


def _images():
    rng = np.random.RandomState(42)
    return rng.randn(N_DOCS, 3, 64, 64).astype(np.float32)


def _doc_id(i):
    return '%016x' % (0xabc000 + i)


def _write_indexer_yaml(folder: Path) -> Path:
    y = folder / 'indexer.yml'
    y.write_text('!NumpyIndexer\nwith:\n  index_filename: vec.gz\n  metric: cosine\n'
                 'metas:\n  name: vecidx\n  workspace: %s\n' % (folder / 'ws'))
    return y


def _index_then_search(encoder_yaml, indexer_yaml, workdir, parallel):
    """Runs in a fresh process: index all images, then search with each of them."""
    os.chdir(workdir)
    from jina import Document
    from jina.flow import Flow

    images = _images()
    indexed, searched = {}, {}

    def collect(into):
        def on_done(resp):
            for d in resp.docs:
                into[d.id] = (d.embedding.copy(), [(m.id, m.score.value) for m in d.matches])
        return on_done

    docs = [Document(id=_doc_id(i), blob=images[i]) for i in range(N_DOCS)]
    with Flow().add(uses=str(encoder_yaml), parallel=parallel).add(uses=str(indexer_yaml)) as f:
        f.index(docs, on_done=collect(indexed), request_size=3)
    queries = [Document(id=_doc_id(100 + i), blob=images[i]) for i in range(N_DOCS)]
    with Flow().add(uses=str(encoder_yaml), parallel=parallel).add(uses=str(indexer_yaml)) as f:
        f.search(queries, on_done=collect(searched), request_size=4, top_k=3)
    return indexed, searched


@pytest.mark.parametrize('parallel', [1, 2])
def test_flow_index_and_search(tmp_path, small_release, repo_root, parallel):
    ckpt, backbone, fc = small_release
    # The repository's own config.yml, with model_path 'pretrained' found in the working dir.
    (tmp_path / 'pretrained').mkdir()
    os.link(str(ckpt), str(tmp_path / 'pretrained' / 'model_best.pth.tar'))
    indexer_yaml = _write_indexer_yaml(tmp_path)

    indexed, searched = run_in_fresh_process(
        _index_then_search, repo_root / 'config.yml', indexer_yaml, tmp_path, parallel, timeout=300)

    expected = reference_embed(backbone, fc, _images())
    assert sorted(indexed) == sorted(_doc_id(i) for i in range(N_DOCS))
    assert sorted(searched) == sorted(_doc_id(100 + i) for i in range(N_DOCS))
    for i in range(N_DOCS):
        emb, _ = indexed[_doc_id(i)]
        assert emb.shape == (1024,) and emb.dtype == np.float32
        np.testing.assert_allclose(emb, expected[i], atol=2e-5)
        q_emb, matches = searched[_doc_id(100 + i)]
        np.testing.assert_allclose(q_emb, expected[i], atol=2e-5)
        # The same image, indexed, is its own nearest neighbour.
        assert matches and matches[0][0] == _doc_id(i)
