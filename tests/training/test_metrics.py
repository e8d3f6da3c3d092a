"""VSE++'s retrieval protocol (vseimageencoder.training.metrics) against a plain
reimplementation written the way VSE++'s evaluation.py computes it: one query at a time, a
full argsort, the best true caption's position."""
import math

import numpy as np
import pytest

from vseimageencoder.training.data import karpathy_split
from vseimageencoder.training.metrics import (evaluate_embeddings, i2t_ranks, rsum, summarize,
                                              t2i_ranks)


def _normed(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _embeddings(n, d=32, noise=5.0, seed=0):
    """Captions near their image (so recalls are neither 0 nor 100), no ties."""
    rng = np.random.RandomState(seed)
    im = _normed(rng.randn(n, d))
    cap = _normed(np.repeat(im, 5, axis=0) + noise * rng.randn(5 * n, d) / math.sqrt(d))
    return im, cap


def reference(im, cap):
    """VSE++'s i2t / t2i loops: argsort each query's scores, descending."""
    n = len(im)
    r_i2t = np.zeros(n)
    for i in range(n):
        order = np.argsort(im[i] @ cap.T)[::-1]
        r_i2t[i] = min(np.where(order == j)[0][0] for j in range(5 * i, 5 * i + 5))
    r_t2i = np.zeros(5 * n)
    for j in range(5 * n):
        order = np.argsort(cap[j] @ im.T)[::-1]
        r_t2i[j] = np.where(order == j // 5)[0][0]

    def figures(r):
        return {'r1': 100.0 * len(np.where(r < 1)[0]) / len(r), 'r5': 100.0 * len(np.where(r < 5)[0]) / len(r),
                'r10': 100.0 * len(np.where(r < 10)[0]) / len(r),
                'medr': np.floor(np.median(r)) + 1, 'meanr': r.mean() + 1}
    return r_i2t, r_t2i, figures(r_i2t), figures(r_t2i)


def test_ranks_and_figures_match_the_plain_protocol():
    im, cap = _embeddings(60)
    ref_i2t, ref_t2i, ref_a, ref_b = reference(im, cap)
    np.testing.assert_array_equal(i2t_ranks(im, cap), ref_i2t)
    np.testing.assert_array_equal(t2i_ranks(im, cap), ref_t2i)
    res = evaluate_embeddings(im, cap)
    for key in ('r1', 'r5', 'r10', 'medr', 'meanr'):
        assert res['i2t'][key] == pytest.approx(ref_a[key])
        assert res['t2i'][key] == pytest.approx(ref_b[key])
    assert 0 < res['i2t']['r1'] < 100 and 0 < res['t2i']['r10'] < 100  # a test that can fail
    assert res['rsum'] == pytest.approx(sum(ref_a['r%d' % k] + ref_b['r%d' % k] for k in (1, 5, 10)))
    assert (res['images'], res['captions'], res['folds']) == (60, 300, 1)


def test_small_blocks_give_the_same_ranks():
    im, cap = _embeddings(40, seed=3)
    np.testing.assert_array_equal(i2t_ranks(im, cap, chunk_bytes=1), i2t_ranks(im, cap))
    np.testing.assert_array_equal(t2i_ranks(im, cap, chunk_bytes=4 * 7 * 40), t2i_ranks(im, cap))


def test_fold5_averages_per_fold_figures_and_sums_the_averaged_recalls():
    im, cap = _embeddings(50, seed=1)
    res = evaluate_embeddings(im, cap, folds=5)
    per_fold = [reference(im[10 * f:10 * f + 10], cap[50 * f:50 * f + 50]) for f in range(5)]
    for side, idx in (('i2t', 2), ('t2i', 3)):
        for key in ('r1', 'r5', 'r10', 'medr', 'meanr'):
            assert res[side][key] == pytest.approx(np.mean([p[idx][key] for p in per_fold]))
    six = sum(res[s]['r%d' % k] for s in ('i2t', 't2i') for k in (1, 5, 10))
    assert res['rsum'] == pytest.approx(six) == rsum(res)
    assert res['folds'] == 5
    # Ranks are within each fold: the fold's candidates only.
    np.testing.assert_array_equal(res['ranks']['i2t'][10:20], per_fold[1][0])
    assert res['ranks']['t2i'].max() < 10
    # And a fold result differs from the all-at-once one (more candidates, higher ranks).
    assert evaluate_embeddings(im, cap)['i2t']['meanr'] > res['i2t']['meanr']


def test_medr_and_meanr_are_one_based_and_floor_the_median():
    assert summarize(np.array([0, 1, 2, 3])) == {'r1': 25.0, 'r5': 100.0, 'r10': 100.0,
                                                 'medr': 2.0, 'meanr': 2.5}
    assert summarize(np.array([0, 0, 9, 20, 7]))['medr'] == 8.0
    assert summarize(np.array([4, 10]))['r5'] == 50.0


def test_ties_count_against_the_query():
    # Every pair scores the same: each true item is placed after every wrong one.
    n = 7
    im = np.ones((n, 4), np.float32) / 2
    cap = np.ones((5 * n, 4), np.float32) / 2
    assert (i2t_ranks(im, cap) == 5 * n - 5).all()
    assert (t2i_ranks(im, cap) == n - 1).all()
    # One wrong caption tied with image 0's best true one: rank 1, not 0.
    im, cap = _embeddings(6, seed=2)
    scores = im[0] @ cap.T
    best = int(np.argmax(scores[:5]))
    cap[10] = cap[best]
    assert i2t_ranks(im, cap)[0] == 1 + int((np.delete(scores, list(range(5)) + [10]) > scores[best]).sum())


def test_more_than_five_captions_use_the_first_five(tmp_path):
    import json
    im, cap = _embeddings(3, seed=4)
    sentences = [['image %d caption %d' % (i, k) for k in range(7 if i == 1 else 5)] for i in range(3)]
    (tmp_path / 'd.json').write_text(json.dumps({'images': [
        {'filename': '%d.jpg' % i, 'split': 'test', 'sentences': [{'raw': s} for s in sentences[i]]}
        for i in range(3)]}))
    split = karpathy_split(tmp_path / 'd.json', tmp_path, 'test')
    assert split.captions[5:10] == sentences[1][:5] and split.captions[10] == sentences[2][0]
    assert len(split.captions) == 15


@pytest.mark.parametrize('shapes', [((3, 8), (14, 8)), ((3, 8), (15, 4)), ((0, 8), (0, 8))])
def test_wrong_layouts_are_named(shapes):
    with pytest.raises(ValueError, match='caption|images|expected'):
        evaluate_embeddings(np.zeros(shapes[0], np.float32), np.zeros(shapes[1], np.float32))
