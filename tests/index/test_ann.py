"""The approximate nearest-neighbour index (vseimageencoder.index.ann) against the exact scan."""
import json
import os

import numpy as np
import pytest

faiss = pytest.importorskip('faiss')  # a declared dependency; absent only in a broken venv

from vseimageencoder.index.ann import AnnFormatError, AnnIndex, suggested_nlist  # noqa: E402

DIM = 48


def clustered(n, seed, clusters=60, dim=DIM):
    """Unit vectors around ``clusters`` random centres (cosine to the centre about 0.7)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(clusters, size=n)] + rng.standard_normal((n, dim)) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top(vectors, ids, queries, k):
    s = queries @ vectors.T
    order = np.argsort(-s, axis=1, kind='stable')[:, :k]
    return np.take_along_axis(s, order, axis=1), ids[order]


def recall(found, truth):
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


@pytest.fixture(scope='module')
def data():
    # Queries come from the same clusters as the rows (same centres), as photos of a kind do.
    both = clustered(6100, seed=1)
    x, q = both[:6000], both[6000:]
    ids = np.arange(1000, 7000, dtype=np.int64)
    return x, ids, q


@pytest.fixture(scope='module')
def built(data):
    x, ids, _ = data
    return AnnIndex.build(x, ids)


def test_recall_against_exact_scan_and_true_cosines(data, built):
    x, ids, q = data
    assert built.nlist == suggested_nlist(len(x)) > 1  # really approximate: several cells
    assert built.nprobe < built.nlist
    scores, found = built.search(q, 10)
    assert scores.shape == found.shape == (100, 10)
    assert scores.dtype == np.float32 and found.dtype == np.int64
    _, truth = exact_top(x, ids, q, 10)
    assert recall(found, truth) >= 0.95
    # Scores are the exact cosines of the query with the stored row, best first.
    row = {int(i): r for r, i in enumerate(ids)}
    want = np.einsum('qd,qkd->qk', q, x[[[row[int(i)] for i in f] for f in found]])
    np.testing.assert_allclose(scores, want, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_probing_every_cell_is_exact(data, built):
    x, ids, q = data
    scores, found = built.search(q, 10, nprobe=built.nlist)
    want_scores, truth = exact_top(x, ids, q, 10)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    assert recall(found, truth) == 1.0


def test_add_and_remove(data):
    x, ids, q = data
    ann = AnnIndex.build(x[:5000], ids[:5000])
    ann.add(x[5000:], ids[5000:])
    assert len(ann) == 6000
    # A query equal to an added row finds it first, score 1.
    s, f = ann.search(x[5500:5510], 1)
    assert list(f[:, 0]) == list(ids[5500:5510])
    np.testing.assert_allclose(s[:, 0], 1.0, atol=1e-5)
    with pytest.raises(ValueError, match='already in the ANN index'):
        ann.add(x[:1], ids[:1])
    gone = ids[::3]
    assert ann.remove(np.concatenate([gone, [10 ** 9]])) == len(gone)
    assert ann.remove(gone) == 0
    assert len(ann) == 6000 - len(gone)
    _, f = ann.search(np.concatenate([q, x[::3][:50]]), 20)
    assert not np.isin(f, gone).any()
    keep = ~np.isin(ids, gone)
    _, truth = exact_top(x[keep], ids[keep], q, 10)
    _, f = ann.search(q, 10)
    assert recall(f, truth) >= 0.95


def test_k_beyond_rows_and_tiny_index():
    x = clustered(5, seed=3)
    ann = AnnIndex.build(x, np.arange(5))
    assert ann.nlist == 1
    s, f = ann.search(x[:2], 50)
    assert f.shape == (2, 5) and sorted(f[0]) == [0, 1, 2, 3, 4]
    empty = AnnIndex.build(np.zeros((0, DIM), np.float32), np.zeros(0, np.int64))
    s, f = empty.search(x[:1], 3)
    assert f.shape == (1, 0)
    empty.add(x, np.arange(5))
    assert len(empty) == 5


def test_few_rows_in_probed_cells_still_fills_k(data, built):
    # With 1 probe a cell may hold fewer than k rows; the search widens until k are found.
    _, f = built.search(data[2][:5], 300, nprobe=1)
    assert f.shape == (5, 300) and (f >= 0).all()
    assert all(len(set(r)) == 300 for r in f)


def test_bad_input_named(built):
    with pytest.raises(ValueError, match='unit L2 norm'):
        AnnIndex.build(np.full((4, DIM), 0.5, np.float32), np.arange(4))
    with pytest.raises(ValueError, match='width'):
        built.add(np.ones((1, DIM + 1), np.float32), [1])
    with pytest.raises(ValueError, match='duplicates'):
        AnnIndex.build(clustered(4, seed=4), [1, 1, 2, 3])
    with pytest.raises(ValueError, match='queries must be'):
        built.search(np.ones((2, 3), np.float32), 1)


def test_save_load_round_trip_and_incremental_segments(data, tmp_path):
    x, ids, q = data
    d = tmp_path / 'ann'
    ann = AnnIndex.build(x[:5000], ids[:5000], merge_fraction=0.5)
    ann.save(d)
    base = json.loads((d / 'manifest.json').read_text())['base']
    vectors_file = d / base / 'vectors.npy'
    stamp = os.stat(str(vectors_file)).st_mtime_ns

    ann.add(x[5000:5500], ids[5000:5500])
    ann.remove(ids[:100])
    ann.remove(ids[5400:5500])  # added and removed between two saves
    ann.save(d)
    m = json.loads((d / 'manifest.json').read_text())
    # The update went into a segment: the base was not rewritten.
    assert m['base'] == base and len(m['segments']) == 1
    assert os.stat(str(vectors_file)).st_mtime_ns == stamp
    assert not [p for p in os.listdir(str(d)) if p.startswith('.tmp')]

    back = AnnIndex.load(d)
    assert len(back) == len(ann) == 5300
    assert np.array_equal(back.ids(), ann.ids())
    s1, f1 = ann.search(q, 10)
    s2, f2 = back.search(q, 10)
    assert np.array_equal(f1, f2)
    np.testing.assert_array_equal(s1, s2)
    assert not np.isin(f2, np.concatenate([ids[:100], ids[5400:5500]])).any()
    assert np.isin(ids[5000:5400], back.ids()).all()

    # Segments past merge_fraction of the base: the next save writes a new base, drops the rest.
    back.add(x[5500:], ids[5500:])
    back.remove(ids[100:2500])
    back.save(d)
    m2 = json.loads((d / 'manifest.json').read_text())
    assert m2['base'] != base and m2['segments'] == [] and m2['rows'] == len(back)
    assert sorted(os.listdir(str(d))) == sorted(['manifest.json', m2['base']])
    again = AnnIndex.load(d)
    assert np.array_equal(again.ids(), back.ids())
    assert np.array_equal(again.search(q, 10)[1], back.search(q, 10)[1])


def test_damaged_directory_is_named(data, tmp_path):
    x, ids, _ = data
    d = tmp_path / 'ann'
    with pytest.raises(AnnFormatError, match='manifest.json is missing'):
        AnnIndex.load(d)
    AnnIndex.build(x[:1000], ids[:1000]).save(d)
    m = json.loads((d / 'manifest.json').read_text())
    (d / m['base'] / 'ids.npy').write_bytes(b'\x93NUMPY garbage')
    with pytest.raises(AnnFormatError, match='ids.npy'):
        AnnIndex.load(d)
    m['version'] = 99
    (d / 'manifest.json').write_text(json.dumps(m))
    with pytest.raises(AnnFormatError, match='version 99'):
        AnnIndex.load(d)
    m['version'], m['base'] = 1, '../../etc'
    (d / 'manifest.json').write_text(json.dumps(m))
    with pytest.raises(AnnFormatError, match='invalid fields'):
        AnnIndex.load(d)


def test_append_saved_writes_segments_then_merges(data, tmp_path):
    from vseimageencoder.index.ann import append_saved, saved_ids
    x, ids, q = data
    d = tmp_path / 'ann'
    AnnIndex.build(x[:4000], ids[:4000], merge_fraction=0.1).save(d)
    base = json.loads((d / 'manifest.json').read_text())['base']
    # Small updates go to segments without loading the index...
    append_saved(d, x[4000:4100], ids[4000:4100], ids[:50], meta={'commit': 2})
    held, m = saved_ids(d)
    assert m['base'] == base and len(m['segments']) == 1 and m['meta'] == {'commit': 2}
    assert np.array_equal(held, np.sort(np.concatenate([ids[50:4100]])))
    # ...until they pass merge_fraction of the base: then one new base holds everything.
    append_saved(d, x[4100:4500], ids[4100:4500], [], meta={'commit': 3})
    held, m = saved_ids(d)
    assert m['base'] != base and m['segments'] == [] and m['meta'] == {'commit': 3}
    assert np.array_equal(held, ids[50:4500])
    back = AnnIndex.load(d)
    assert np.array_equal(back.ids(), ids[50:4500])
    s, f = back.search(x[4400:4410], 1)
    assert list(f[:, 0]) == list(ids[4400:4410])


def test_faiss_gets_vector_blas_kernels_and_leaves_no_variable_behind():
    # faiss-cpu bundles an OpenBLAS older than recent CPUs; unhelped it picks generic SSE3
    # kernels there and a build runs at a quarter of the speed (docs/index.md).
    import ctypes
    import subprocess
    import sys
    from vseimageencoder.index.ann import _openblas_core_hint
    hint = _openblas_core_hint()
    if hint is None:
        pytest.skip('this CPU has neither AVX2+FMA nor AVX-512: OpenBLAS picks its own kernels')
    code = (
        'import ctypes, os, sys\n'
        'from vseimageencoder.index.ann import _faiss\n'
        'assert "OPENBLAS_CORETYPE" not in os.environ\n'
        '_faiss()\n'
        'assert "OPENBLAS_CORETYPE" not in os.environ, "left set for child processes"\n'
        'libs = {l.split()[-1] for l in open("/proc/self/maps") if "faiss" in l and "openblas" in l}\n'
        'assert len(libs) == 1, libs\n'
        'lib = ctypes.CDLL(libs.pop())\n'
        'lib.openblas_get_corename.restype = ctypes.c_char_p\n'
        'print(lib.openblas_get_corename().decode())\n')
    env = {k: v for k, v in os.environ.items() if k != 'OPENBLAS_CORETYPE'}
    out = subprocess.run([sys.executable, '-c', code], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert out.returncode == 0, out.stderr
    core = out.stdout.strip().lower()
    assert core not in ('prescott', 'unknown', 'katmai', 'core2', ''), core
    assert core == hint.lower(), (core, hint)
