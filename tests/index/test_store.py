"""The on-disk index and encode's file list, without a model: format, commits, damage, names."""
import json
import os
import shutil
import unicodedata

import numpy as np
import pytest

from vseimageencoder.index import (DamagedIndexError, IndexFileError, IndexLockedError, NewerFormatError,
                                   NotAnIndexError, PairWriter, Writer, escape, load_pair, open_index,
                                   unescape)
from vseimageencoder.index.name_escaping import BadEscapeError

HOSTILE = [b'plain.jpg', b'evil\nb.jpg', b'bad\xff.jpg', b'\x1b[2J\x1b[31mred.jpg', b'back\\slash\\x41.jpg',
           'caf\u00e9 \u202egnp.jpg'.encode(), b'\xc2\x9b31m c1.jpg', b'cut\xe2\x82', b'\xed\xa0\x80sur.png',
           b'tab\there\r.png', '\u0646\u0627\u0645 \U0001F600.png'.encode()]


def _unit(rng, n, d=8):
    v = rng.randn(n, d).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _snapshot(folder):
    return {n: (folder / n).read_bytes() for n in sorted(os.listdir(str(folder))) if (folder / n).is_file()}


# --------------------------------------------------------------------------- names

@pytest.mark.parametrize('raw', HOSTILE)
def test_names_round_trip_and_print_safely(raw):
    line = escape(raw)
    assert os.fsencode(unescape(line)) == raw
    assert not any(unicodedata.category(c) in ('Cc', 'Cf', 'Zl', 'Zp') for c in line), line
    assert '\n' not in line and '\x1b' not in line and '\x9b' not in line
    line.encode('utf-8')  # no lone surrogates: always printable as UTF-8


def test_ordinary_names_read_unchanged_and_damage_is_named():
    assert escape('/photos/été 2023/IMG_0001.JPG') == '/photos/été 2023/IMG_0001.JPG'
    for bad in ('lone\\', 'x\\q', 'raw\nnewline'):
        with pytest.raises(BadEscapeError):
            unescape(bad)


# --------------------------------------------------------------------------- the store

def _make(tmp_path, rng, names, dim=8):
    d = tmp_path / 'ix'
    v = _unit(rng, len(names), dim)
    with Writer(d) as w:
        w.create({'sha256': 'a' * 64, 'arch': 'resnet18', 'embed_size': dim}, dim)
        ids = w.add(v, names, [1] * len(names), [2] * len(names))
        w.commit()
    return d, v, ids


def test_commit_reopen_search_and_stable_ids(tmp_path):
    rng = np.random.RandomState(0)
    names = [os.fsdecode(b) for b in HOSTILE] + ['/p/%d.jpg' % i for i in range(20)]
    d, v, ids = _make(tmp_path, rng, names)
    ix = open_index(d)
    assert len(ix) == len(names) and ix.dim == 8 and ix.provenance['arch'] == 'resnet18'
    assert list(ix.ids()) == ids == list(range(len(names)))
    for i, n in zip(ids, names):
        assert ix.file(i) == n
        np.testing.assert_allclose(ix.vector(i), v[i], atol=1e-6)
    q = _unit(rng, 3)
    want = q @ v.T
    for qi, hits in enumerate(ix.search(q, 5)):
        order = np.argsort(-want[qi], kind='stable')[:5]
        assert [f for _, f in hits] == [names[j] for j in order]
        np.testing.assert_allclose([s for s, _ in hits], want[qi][order], atol=1e-5)
    assert len(ix.search(q[:1], 1000)[0]) == len(names)  # k above the rows: every row

    with Writer(d) as w:
        w.remove([ids[0], ids[5]])
        new = w.add(_unit(rng, 1), ['/p/new.jpg'], [3], [4])
        w.commit()
    assert new == [len(names)]  # ids are never reused
    assert ix.refresh() is True and ix.refresh() is False
    assert len(ix) == len(names) - 1
    with pytest.raises(KeyError):
        ix.file(ids[0])
    assert ix.file(new[0]) == '/p/new.jpg' and ix.file(ids[1]) == names[1]
    assert all(f != names[0] for hits in ix.search(q, 1000) for _, f in hits)

    # Compaction: new files, same ids, same answers; an old view keeps reading its own.
    before = ix.search(q, 4)
    with Writer(d) as w:
        w.remove(ids[6:])
        w.commit()
        w.compact()
    assert sorted(os.listdir(str(d))) == ['lock', 'manifest.json', 'records.2.jsonl', 'vectors.2.f32']
    assert ix.search(q, 4) == before
    ix.refresh()
    assert list(ix.ids()) == ids[1:5] + new
    assert ix.file(new[0]) == '/p/new.jpg'
    np.testing.assert_allclose(ix.vector(ids[3]), v[3], atol=1e-6)


def test_uncommitted_bytes_are_invisible_then_cut(tmp_path):
    rng = np.random.RandomState(1)
    d, v, ids = _make(tmp_path, rng, ['/a.jpg', '/b.jpg'])
    w = Writer(d)
    w.add(_unit(rng, 3), ['/c.jpg', '/d.jpg', '/e.jpg'], [0] * 3, [0] * 3)
    w.remove([ids[0]])
    w._vec.flush()
    w._rec.flush()
    ix = open_index(d)  # what a search sees while a writer is mid-batch
    assert len(ix) == 2 and [f for _, f in ix.search(v[:1], 5)[0]] == ['/a.jpg', '/b.jpg']
    w.close()  # dies without committing: its bytes stay behind the committed lengths
    with open(str(d / 'records.1.jsonl'), 'ab') as f:
        f.write(b'{"id": 99, "pa')  # and a torn line
    assert len(open_index(d)) == 2
    with Writer(d) as w2:
        w2.add(_unit(rng, 1), ['/f.jpg'], [0], [0])
        w2.commit()
    ix = open_index(d)
    assert [ix.file(i) for i in ix.ids()] == ['/a.jpg', '/b.jpg', '/f.jpg']
    assert os.path.getsize(str(d / 'vectors.1.f32')) == 3 * 8 * 4


def test_one_writer_at_a_time(tmp_path):
    d, _, _ = _make(tmp_path, np.random.RandomState(2), ['/a.jpg'])
    with Writer(d):
        with pytest.raises(IndexLockedError, match='another process is writing'):
            Writer(d)
        assert len(open_index(d)) == 1  # readers take no lock
    Writer(d).close()


def test_not_an_index_newer_and_damaged_parts_are_named_and_nothing_written(tmp_path):
    rng = np.random.RandomState(3)
    other = tmp_path / 'holiday'
    other.mkdir()
    (other / 'notes.txt').write_text('mine')
    for target in (other, other / 'notes.txt'):
        with pytest.raises(NotAnIndexError, match='holiday'):
            Writer(target)
        with pytest.raises(NotAnIndexError, match='holiday'):
            open_index(target)
    assert sorted(os.listdir(str(other))) == ['notes.txt']

    d, v, ids = _make(tmp_path, rng, ['/a.jpg', '/b.jpg', '/c.jpg'])
    good = _snapshot(d)

    def damaged(change, error, match):
        shutil.rmtree(str(d))
        d.mkdir()
        for n, data in good.items():
            (d / n).write_bytes(data)
        change()
        before = _snapshot(d)
        with pytest.raises(error, match=match):
            open_index(d)
        with pytest.raises(error, match=match):
            Writer(d)
        assert _snapshot(d) == before

    def manifest(**kw):
        m = json.loads(good['manifest.json'])
        m.update(kw)
        (d / 'manifest.json').write_text(json.dumps(m))

    damaged(lambda: manifest(version=99), NewerFormatError, 'version 99')
    damaged(lambda: (d / 'manifest.json').write_text('{"format": "vseimageencoder-index", "vers'),
            DamagedIndexError, 'manifest.json is not valid JSON')
    damaged(lambda: (d / 'vectors.1.f32').write_bytes(good['vectors.1.f32'][:50]), DamagedIndexError,
            r'vectors\.1\.f32 holds 50 bytes')
    damaged(lambda: (d / 'records.1.jsonl').write_bytes(good['records.1.jsonl'].replace(b'"/b.jpg"', b'x/b.jpg"')),
            DamagedIndexError, r'records\.1\.jsonl: a committed record is not valid JSON')
    damaged(lambda: manifest(rows=4, next_id=4), DamagedIndexError, 'records add 3 rows, but the manifest commits 4')
    damaged(lambda: (d / 'records.1.jsonl').unlink(), DamagedIndexError, r'records\.1\.jsonl')
    damaged(lambda: manifest(dim=2 ** 64 - 1), DamagedIndexError, 'dim')


def test_writer_refuses_nan_and_zero_rows_naming_the_file(tmp_path):
    d, _, _ = _make(tmp_path, np.random.RandomState(4), ['/a.jpg'])
    with Writer(d) as w:
        bad = np.ones((2, 8), np.float32)
        bad[1, 3] = np.nan
        with pytest.raises(ValueError, match=r'evil\\x0aname'):
            w.add(bad, ['/ok.jpg', '/evil\nname.jpg'], [0, 0], [0, 0])
        with pytest.raises(ValueError, match='zeros'):
            w.add(np.zeros((1, 8)), ['/z.jpg'], [0], [0])


# --------------------------------------------------------------------------- encode's pair

def _pair(tmp_path, name, rows, names, prov=None):
    w = PairWriter(tmp_path / name, rows.shape[1], prov)
    w.write(rows, names)
    w.commit()
    return tmp_path / name


def test_pair_keeps_any_name_and_refuses_a_mixed_pair(tmp_path):
    rng = np.random.RandomState(5)
    names = [os.fsdecode(b) for b in HOSTILE]
    a = _unit(rng, len(names))
    p = _pair(tmp_path, 'a.npy', a, names, {'sha256': 'f' * 64})
    np.testing.assert_array_equal(np.load(str(p)), a)  # a plain .npy
    pair = load_pair(p)
    assert [os.fsencode(n) for n in pair.files] == HOSTILE and pair.provenance == {'sha256': 'f' * 64}
    assert len((tmp_path / 'a.files.txt').read_bytes().split(b'\n')) == len(names) + 2  # header, rows, ''
    assert not list(tmp_path.glob('*.part'))

    # Two runs with the same row count: the array of one with the file list of the other.
    _pair(tmp_path, 'b.npy', _unit(rng, len(names)), names[::-1])
    shutil.copy(str(tmp_path / 'b.files.txt'), str(tmp_path / 'a.files.txt'))
    with pytest.raises(IndexFileError, match='not from the same encode run'):
        load_pair(p)


def test_pair_refuses_nan_empty_and_impossible_arrays(tmp_path):
    rng = np.random.RandomState(6)
    rows = _unit(rng, 3)
    rows[1, 2] = np.nan
    w = PairWriter(tmp_path / 'n.npy', 8)
    w.write(rows, ['a', 'evil\x1b[31m', 'c'])
    w.commit()
    with pytest.raises(IndexFileError, match=r'row 1 \(evil\\x1b\[31m\) holds NaN'):
        load_pair(tmp_path / 'n.npy')

    PairWriter(tmp_path / 'e.npy', 8).commit()
    with pytest.raises(IndexFileError, match='holds no embeddings'):
        load_pair(tmp_path / 'e.npy')

    # A header declaring 2**64-1 rows over a few bytes of data.
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 8), }"
    huge = b'\x93NUMPY\x01\x00' + (118).to_bytes(2, 'little') + (text + ' ' * (117 - len(text)) + '\n').encode()
    (tmp_path / 'h.npy').write_bytes(huge + b'\0' * 64)
    (tmp_path / 'h.files.txt').write_text('a\n')
    with pytest.raises(IndexFileError, match=r'h\.npy declares 18446744073709551615 rows of 8 values'):
        load_pair(tmp_path / 'h.npy')

    # A list written before the header existed: read as plain lines, the count checked.
    np.save(str(tmp_path / 'old.npy'), _unit(rng, 2))
    (tmp_path / 'old.files.txt').write_text('x.jpg\ny.jpg\n')
    assert load_pair(tmp_path / 'old.npy').files == ['x.jpg', 'y.jpg']
    (tmp_path / 'old.files.txt').write_text('x.jpg\n')
    with pytest.raises(IndexFileError, match='2 rows but .* lists 1 files'):
        load_pair(tmp_path / 'old.npy')
