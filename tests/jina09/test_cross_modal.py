"""Captions and images in one space, through real jina 0.9.33 Flows (the search command:
tests/cli/test_search.py).

The checkpoint and vocabulary are written as the releases were (Python 2.7 pickles, legacy
torch format, GPU storage locations). Expected results are computed independently: the
text tower step by step (tests.support.vsepp_release.reference_text_embed), the image tower the
straightforward way (reference_embed), and the top-k by brute force.
"""
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

# The release, the photos and the expected results: the same as the search command's tests.
from tests.cli.test_search import (CAPTIONS, EMBED, _brute_force, _expected_text,  # noqa: F401
                                   photos, release)
from tests.support.fresh_process import run_in_fresh_process
from tests.support.vsepp_release import reference_embed

pytestmark = pytest.mark.jina09

REPO = Path(__file__).resolve().parent.parent.parent


def _expected_images(release, paths):
    from vseimageencoder.images.transform import transform
    _, rel, _ = release
    return reference_embed(rel.backbone, rel.fc, np.stack([transform(p) for p in paths]))


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


