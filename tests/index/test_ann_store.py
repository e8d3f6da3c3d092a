"""The approximate index kept in step with an index folder (vseimageencoder.index.ann_store)."""
import json
import os

import numpy as np
import pytest

pytest.importorskip('faiss')

from vseimageencoder.index import open_index, store  # noqa: E402
from vseimageencoder.index.store import NoApproximateIndexError, Writer, _ann_after_update  # noqa: E402

from .test_ann import clustered  # noqa: E402


def _update(d, add=None, names=(), remove=(), sync=True):
    w = Writer(d)
    try:
        if not w.exists:
            w.create({'sha256': 'test'}, add.shape[1])
        if len(remove):
            w.remove(list(remove))
        if add is not None:
            w.add(add, list(names), [1] * len(names), [1] * len(names))
        w.commit()
        if sync:  # what update_index does after its last commit
            _ann_after_update(w)
    finally:
        w.close()


def _files(hits):
    return {f for h in hits for _, f in h}


def test_ann_built_at_threshold_kept_in_step_by_segments(tmp_path, monkeypatch):
    monkeypatch.setattr(store, 'ANN_THRESHOLD', 3000)
    d = tmp_path / 'ix'
    ann_dir = d / store.ANN_DIR
    x = clustered(6300, seed=5)
    q = x[6000:6100]
    _update(d, x[:2000], ['f%d' % i for i in range(2000)])
    assert not ann_dir.exists()  # below the threshold the scan serves
    _update(d, x[2000:5000], ['f%d' % i for i in range(2000, 5000)])
    m = json.loads((ann_dir / 'manifest.json').read_text())
    assert m['rows'] == 5000 and m['segments'] == []

    ix = open_index(d, ann_threshold=3000)
    approx, exact = ix.search(q, 10), ix.search(q, 10, exact=True)
    assert ix._ann is not None  # automatic choice above the threshold took the ANN path
    recall = np.mean([len({f for _, f in a} & {f for _, f in e}) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.95
    # Same rows found get the same (true cosine) scores on both paths.
    for a, e in zip(approx, exact):
        es = dict((f, s) for s, f in e)
        for s, f in a:
            if f in es:
                assert abs(s - es[f]) < 1e-5

    # A small update appends one segment; the base is not rewritten.
    base_vectors = ann_dir / m['base'] / 'vectors.npy'
    stamp = os.stat(str(base_vectors)).st_mtime_ns
    _update(d, x[5000:5100], ['g%d' % i for i in range(100)], remove=range(100))
    m2 = json.loads((ann_dir / 'manifest.json').read_text())
    assert m2['base'] == m['base'] and len(m2['segments']) == 1 and m2['rows'] == 5000
    assert os.stat(str(base_vectors)).st_mtime_ns == stamp

    assert ix.refresh()
    removed = {'f%d' % i for i in range(100)}
    assert not _files(ix.search(x[:100], 3, exact=False)) & removed
    found = ix.search(x[5000:5100], 1, exact=False)
    assert [h[0][1] for h in found] == ['g%d' % i for i in range(100)]
    assert abs(found[0][0][0] - 1.0) < 1e-5


def test_rows_committed_before_a_crash_are_answered_for(tmp_path, monkeypatch):
    """A writer killed between its commit and the ANN update leaves the ANN behind; readers
    catch up in memory (no removed row returned, new rows found) and the next update
    brings the saved ANN in step."""
    monkeypatch.setattr(store, 'ANN_THRESHOLD', 1000)
    d = tmp_path / 'ix'
    x = clustered(2200, seed=6)
    _update(d, x[:2000], ['f%d' % i for i in range(2000)])
    _update(d, x[2000:2100], ['n%d' % i for i in range(100)], remove=range(100, 200), sync=False)
    ix = open_index(d, ann_threshold=1000)
    assert not _files(ix.search(x[100:200], 2)) & {'f%d' % i for i in range(100, 200)}
    assert [h[0][1] for h in ix.search(x[2000:2100], 1)] == ['n%d' % i for i in range(100)]
    _update(d, x[2100:2101], ['late'])
    m = json.loads((d / store.ANN_DIR / 'manifest.json').read_text())
    assert m['rows'] == len(open_index(d)) == 2001
    assert m['meta']['commit'] == open_index(d).commit


def test_forced_ann_below_threshold_and_exact(tmp_path):
    d = tmp_path / 'ix'
    x = clustered(1500, seed=7)
    _update(d, x[:1400], ['f%d' % i for i in range(1400)])
    ix = open_index(d)
    assert not (d / store.ANN_DIR).exists()
    # --ann on a small index without a saved ANN: one is built in memory (nothing written).
    approx = ix.search(x[1400:], 5, exact=False)
    exact = ix.search(x[1400:], 5, exact=True)
    assert ix._ann is not None and not (d / store.ANN_DIR).exists()
    same = np.mean([a[0][1] == e[0][1] for a, e in zip(approx, exact)])
    assert same >= 0.9


def test_damaged_ann_is_rebuilt_by_the_next_update(tmp_path, monkeypatch):
    monkeypatch.setattr(store, 'ANN_THRESHOLD', 1000)
    d = tmp_path / 'ix'
    x = clustered(1300, seed=8)
    _update(d, x[:1200], ['f%d' % i for i in range(1200)])
    (d / store.ANN_DIR / 'manifest.json').write_text('{"format": "something else"}')
    ix = open_index(d, ann_threshold=1000)
    assert len(ix.search(x[1200:1210], 3)) == 10  # falls back (in-memory ANN), still answers
    _update(d, x[1200:], ['g%d' % i for i in range(100)])
    m = json.loads((d / store.ANN_DIR / 'manifest.json').read_text())
    assert m['format'] == 'vseimageencoder-ann' and m['rows'] == 1300


def test_no_ann_for_a_large_index_without_one(tmp_path, monkeypatch):
    from vseimageencoder.index import ann_store
    monkeypatch.setattr(ann_store, 'IN_MEMORY_LIMIT', 100)
    d = tmp_path / 'ix'
    x = clustered(300, seed=9)
    _update(d, x[:200], ['f%d' % i for i in range(200)])
    ix = open_index(d, ann_threshold=100)
    assert len(ix.search(x[200:201], 3)[0]) == 3  # automatic: scans
    with pytest.raises(NoApproximateIndexError):
        ix.search(x[200:201], 3, exact=False)
