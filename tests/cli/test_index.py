"""`vseimageencoder index` and `search` over an index folder, run as users run them: real
processes, real files, a random-weight checkpoint in the release layout."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests.support.images import reference_batch
from tests.support.vsepp_release import reference_embed
from vseimageencoder.index import DamagedIndexError, Writer, escape, load_pair, open_index
from vseimageencoder.index.store import manifest_path
from vseimageencoder.release.weights import sha256_of


def run_cli(*args, **kw):
    return subprocess.run([sys.executable, '-m', 'vseimageencoder', *map(str, args)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=600, **kw)


def _popen(*args):
    return subprocess.Popen([sys.executable, '-m', 'vseimageencoder', *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope='module')
def other_release(tmp_path_factory):
    from tests.support.vsepp_release import write_release_checkpoint
    path = tmp_path_factory.mktemp('r18-other') / 'model_best.pth.tar'
    write_release_checkpoint(path, 'resnet18', embed_size=1024, seed=11)
    return path


def _image(path, seed, size=(40, 56)):
    rng = np.random.RandomState(seed)
    base = (rng.rand(4, 4, 3) * 255).astype(np.uint8)
    Image.fromarray(base).resize(size, Image.BICUBIC).save(path if isinstance(path, bytes) else str(path))


def _last(stdout):
    return stdout.strip().splitlines()[-1]


def test_index_update_cycle_provenance_and_search(tmp_path, small_release, other_release):
    ckpt, backbone, fc = small_release
    a, b = tmp_path / 'A', tmp_path / 'B'
    (a / 'sub').mkdir(parents=True)
    b.mkdir()
    for i in range(4):
        _image(a / ('%d.png' % i), i)
    _image(a / 'sub' / 'deep.png', 10)
    for i in range(2):
        _image(b / ('%d.png' % i), 20 + i)
    (a / 'broken.jpg').write_bytes(b'\xff\xd8 not a jpeg')
    ix = tmp_path / 'ix'

    r = run_cli('index', ix, a, b, '--model-path', ckpt, '--batch-size', 2, '--resize', 'exact')
    assert r.returncode == 1, r.stderr
    assert _last(r.stdout) == 'added 7, updated 0, removed 0, unchanged 0, unreadable 1'
    assert 'broken.jpg' in r.stderr
    index = open_index(ix)
    assert len(index) == 7
    prov = index.provenance
    assert (prov['sha256'], prov['arch'], prov['embed_size'], prov['resize'], prov['precision']) == (
        sha256_of(ckpt), 'resnet18', 1024, 'exact', 'fp32')
    files = [index.file(i) for i in index.ids()]
    want = reference_embed(backbone, fc, reference_batch([Image.open(f).convert('RGB') for f in files]))
    np.testing.assert_allclose(np.stack([index.vector(i) for i in index.ids()]), want, atol=5e-5)
    ids_before = {index.file(i): i for i in index.ids()}

    # Add one, change one, delete one in A; delete one in B, which is not given: it stays.
    _image(a / 'new.png', 30)
    _image(a / '1.png', 31, size=(60, 44))
    os.utime(str(a / '1.png'), ns=(time.time_ns(), time.time_ns() + 10 ** 9))
    (a / '2.png').unlink()
    (b / '0.png').unlink()
    r = run_cli('index', ix, a, '--model-path', ckpt, '--batch-size', 2)
    assert r.returncode == 1, r.stderr
    assert _last(r.stdout) == 'added 1, updated 1, removed 1, unchanged 3, unreadable 1'
    assert 'not tried again' in r.stderr  # broken.jpg, unchanged, is not read again
    assert index.refresh()
    now = {index.file(i): i for i in index.ids()}
    assert sorted(now) == sorted([str(a / n) for n in ('0.png', '1.png', '3.png', 'new.png')]
                                 + [str(a / 'sub' / 'deep.png'), str(b / '0.png'), str(b / '1.png')])
    assert now[str(a / '0.png')] == ids_before[str(a / '0.png')]  # unchanged: same id
    assert now[str(a / '1.png')] not in ids_before.values()         # changed: a new id

    # Nothing to do: the model is never loaded (this "checkpoint" would fail to load).
    (a / 'broken.jpg').unlink()
    garbage = tmp_path / 'garbage.pth.tar'
    garbage.write_bytes(b'not a checkpoint')
    r = run_cli('index', ix, a, b, '--model-path', garbage, '--json')
    assert r.returncode == 0, r.stderr
    # B is given this time: its deleted 0.png goes.
    assert json.loads(_last(r.stdout)) == {'added': 0, 'updated': 0, 'removed': 1, 'unchanged': 6, 'unreadable': 0}

    # Another checkpoint: refused naming both, nothing written.
    _image(a / 'later.png', 40)
    before = manifest_path(ix).read_bytes()
    r = run_cli('index', ix, a, '--model-path', other_release)
    assert r.returncode == 2
    assert sha256_of(ckpt) in r.stderr and sha256_of(other_release) in r.stderr
    assert manifest_path(ix).read_bytes() == before
    r = run_cli('search', ix, 'a dog on a beach', '--model-path', other_release)
    assert r.returncode == 2
    assert sha256_of(ckpt) in r.stderr and sha256_of(other_release) in r.stderr

    # Search by image with the recorded checkpoint (the default): the image itself first.
    r = run_cli('search', ix, '--image', a / '3.png', '-k', 3)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and lines[0] == '1.0000\t%s' % (a / '3.png')

    # A second writer is refused while one holds the index.
    with Writer(ix):
        r = run_cli('index', ix, a, '--model-path', ckpt)
        assert r.returncode == 2 and 'another process is writing' in r.stderr

    # --rebuild with the other checkpoint embeds everything again under its provenance.
    r = run_cli('index', ix, a, b, '--model-path', other_release, '--rebuild', '--json', '--batch-size', 4)
    assert r.returncode == 0, r.stderr
    assert json.loads(_last(r.stdout)) == {'added': 1, 'updated': 6, 'removed': 0, 'unchanged': 0, 'unreadable': 0}
    index.refresh()
    assert len(index) == 7 and index.provenance['sha256'] == sha256_of(other_release)


def test_bad_folders_are_named_and_left_alone(tmp_path, small_release):
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'thesis.tex').write_text('keep me')
    img = tmp_path / 'a.png'
    _image(img, 1)
    for cmd in (('index', mine, img, '--model-path', small_release[0]),
                ('search', mine, '--image', img, '--model-path', small_release[0])):
        r = run_cli(*cmd)
        assert r.returncode == 2 and str(mine) in r.stderr and 'not an index' in r.stderr
    assert os.listdir(str(mine)) == ['thesis.tex']
    r = run_cli('index', tmp_path / 'new', tmp_path / 'missing.png', '--model-path', small_release[0])
    assert r.returncode == 2 and 'missing.png' in r.stderr
    assert not (tmp_path / 'new' / 'manifest.json').exists()

    # .npy indices search refuses with a named error, never a traceback.
    from vseimageencoder.index import PairWriter
    nan = np.ones((2, 1024), np.float32)
    nan[1, 7] = np.nan
    w = PairWriter(tmp_path / 'nan.npy', 1024)
    w.write(nan, ['a.jpg', 'b.jpg'])
    w.commit()
    PairWriter(tmp_path / 'empty.npy', 1024).commit()
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 1024), }"
    (tmp_path / 'huge.npy').write_bytes(b'\x93NUMPY\x01\x00' + (118).to_bytes(2, 'little')
                                        + (text + ' ' * (117 - len(text)) + '\n').encode() + b'\0' * 4096)
    (tmp_path / 'huge.files.txt').write_text('a.jpg\n')
    for name, message in (('nan.npy', 'row 1 (b.jpg) holds NaN'), ('empty.npy', 'holds no embeddings'),
                          ('huge.npy', 'declares 18446744073709551615 rows')):
        r = run_cli('search', tmp_path / name, 'a dog', '--model-path', small_release[0])
        assert r.returncode == 2 and message in r.stderr and 'Traceback' not in r.stderr, (name, r.stderr)


def test_hostile_names_survive_encode_index_and_search(tmp_path, small_release, other_release):
    ckpt = small_release[0]
    d = tmp_path / 'odd'
    d.mkdir()
    raw = [b'evil\nb.png', b'bad\xff.png', b'\x1b[31mred.png', b'ok.png']
    for i, name in enumerate(raw):
        _image(os.fsencode(str(d)) + b'/' + name, 50 + i)
    r = run_cli('encode', d, '--model-path', ckpt, '-o', tmp_path / 'e.npy')
    assert r.returncode == 0, r.stderr  # a name that is not UTF-8 aborts nothing
    pair = load_pair(tmp_path / 'e.npy')
    assert sorted(os.fsencode(f) for f in pair.files) == sorted(os.fsencode(str(d)) + b'/' + n for n in raw)
    assert '\x1b' not in (tmp_path / 'e.files.txt').read_text(encoding='utf-8', errors='replace')

    by_npy = run_cli('search', tmp_path / 'e.npy', '--image', d / 'ok.png', '-k', 4, '--model-path', ckpt)
    assert by_npy.returncode == 0, by_npy.stderr
    out = by_npy.stdout
    assert len(out.splitlines()) == 4 and '\x1b' not in out
    assert escape(str(d)) + '/evil\\x0ab.png' in out and escape(str(d)) + '/bad\\xff.png' in out

    r = run_cli('index', tmp_path / 'ix', d, '--model-path', ckpt)
    assert r.returncode == 0, r.stderr
    by_dir = run_cli('search', tmp_path / 'ix', '--image', d / 'ok.png', '-k', 4, '--model-path', ckpt)
    assert by_dir.returncode == 0 and by_dir.stdout == out  # same lines from either kind of index

    # --from imports encode's pair as it is; again: nothing to do; another checkpoint: refused.
    r = run_cli('index', tmp_path / 'imported', '--from', tmp_path / 'e.npy', '--model-path', ckpt)
    assert r.returncode == 0, r.stderr
    assert _last(r.stdout) == 'added 4, updated 0, removed 0, unchanged 0, unreadable 0'
    imported = open_index(tmp_path / 'imported')
    rows = {f: row for f, row in zip(pair.files, np.asarray(pair.rows))}
    for i in imported.ids():
        np.testing.assert_allclose(imported.vector(i), rows[imported.file(i)], atol=1e-6)
    r = run_cli('index', tmp_path / 'imported', '--from', tmp_path / 'e.npy', '--model-path', ckpt)
    assert _last(r.stdout) == 'added 0, updated 0, removed 0, unchanged 4, unreadable 0'
    r = run_cli('index', tmp_path / 'other', '--from', tmp_path / 'e.npy', '--model-path', other_release)
    assert r.returncode == 2 and sha256_of(ckpt) in r.stderr and sha256_of(other_release) in r.stderr


def _check_view(ix_dir, allowed, seen_counts):
    """A reader during writing: a whole commit, or an error naming a part, never a torn one."""
    try:
        index = open_index(ix_dir)
    except DamagedIndexError as e:  # pragma: no cover - what must not happen
        raise AssertionError('a reader saw a torn index: %s' % e)
    except Exception:
        return  # no manifest yet
    files = [index.file(i) for i in index.ids()]
    assert len(set(files)) == len(files) and set(files) <= allowed
    if len(files):
        v = np.stack([index.vector(i) for i in index.ids()])
        assert np.isfinite(v).all()
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    seen_counts.append(len(files))


def test_kill_9_at_random_points_then_resume_equals_one_run(tmp_path, small_release):
    # 16 commits of 2 images: four stops of at most 4 commits (and a fraction of one) each
    # leave work for the next run to be stopped in, however fast the machine.
    n = 32
    ckpt = small_release[0]
    d = tmp_path / 'imgs'
    d.mkdir()
    for i in range(n):
        _image(d / ('%02d.png' % i), 100 + i)
    allowed = {str(d / ('%02d.png' % i)) for i in range(n)}

    r = run_cli('index', tmp_path / 'ref', d, '--model-path', ckpt, '--batch-size', 2, '--readers', 0)
    assert r.returncode == 0, r.stderr
    ref = open_index(tmp_path / 'ref')

    ix = tmp_path / 'ix'
    rng = random.Random(int(os.environ.get('KILL_SEED', '20261130')))
    kills = 0
    stopped_at = []  # rows in the index after each stop
    for attempt in range(4):
        # Commits to wait for before stopping it (0: during start-up); the first run gets a
        # Ctrl-C once it is writing, the others kill -9.
        target = rng.randint(1, 4) if attempt == 0 else rng.randint(0, 4)
        try:
            base = json.loads(manifest_path(ix).read_text())['commit']
        except OSError:
            base = 0
        p = _popen('index', ix, d, '--model-path', ckpt, '--batch-size', 2, '--readers', 0)
        seen = []
        deadline = time.time() + 120
        last_done, last_change, per_commit = None, None, 0.4
        while p.poll() is None and time.time() < deadline:
            _check_view(ix, allowed, seen)
            try:
                done = json.loads(manifest_path(ix).read_text())['commit']
            except (OSError, ValueError):
                done = 0
            now = time.time()
            if done != last_done:
                if last_done is not None and done > last_done:
                    # A fixed delay would span many commits on a fast machine and none on a
                    # slow one: stop within about one commit's time of this one.
                    per_commit = min(0.4, (now - last_change) / (done - last_done))
                last_done, last_change = done, now
            if done >= base + target:  # then somewhere in the next batch, or between two
                time.sleep(rng.uniform(0, per_commit))
                break
            time.sleep(0.01)
        if p.poll() is None and attempt == 0:
            p.send_signal(signal.SIGINT)  # Ctrl-C: the same guarantees, and exit status 130
            assert p.wait(timeout=60) == 130
        elif p.poll() is None:
            p.kill()
            kills += 1
        p.wait(timeout=60)
        assert seen == sorted(seen), 'a reader saw rows disappear: %s' % seen
        after = []
        _check_view(ix, allowed, after)
        stopped_at.extend(after)
    assert kills >= 2, 'the runs finished before they could be killed'
    assert any(0 < rows < n for rows in stopped_at), 'no stop fell in the middle of the writing: %s' % stopped_at

    r = run_cli('index', ix, d, '--model-path', ckpt, '--batch-size', 2, '--readers', 0)
    assert r.returncode == 0, r.stderr
    counts = _last(r.stdout)
    added, unchanged = int(counts.split('added ')[1].split(',')[0]), int(counts.split('unchanged ')[1].split(',')[0])
    assert added + unchanged == n and 'removed 0' in counts and 'updated 0' in counts
    got = open_index(ix)
    assert len(got) == len(ref) == n
    mine = {got.file(i): got.vector(i) for i in got.ids()}
    theirs = {ref.file(i): ref.vector(i) for i in ref.ids()}
    assert sorted(mine) == sorted(theirs) == sorted(allowed)
    for f in mine:
        np.testing.assert_allclose(mine[f], theirs[f], atol=1e-6)


def test_import_into_an_existing_index_loads_no_torch(tmp_path, small_release):
    # Adding rows to an index records nothing new about the model: the command must not pay
    # for importing torch (3 of the 7 seconds of a 1,000-row add to 1M rows, docs/index.md).
    from vseimageencoder.index.npy_pair import PairWriter
    ckpt = small_release[0]
    rng = np.random.default_rng(5)

    def pair(name, prefix):
        rows = rng.standard_normal((3, 1024)).astype(np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        w = PairWriter(tmp_path / name, 1024)
        w.write(rows, ['%s%d.jpg' % (prefix, i) for i in range(3)])
        w.commit()
        return tmp_path / name

    first, second = pair('a.npy', 'a'), pair('b.npy', 'b')
    r = run_cli('index', tmp_path / 'ix', '--from', first, '--model-path', ckpt)
    assert r.returncode == 0, r.stderr
    code = ('import sys\n'
            'from vseimageencoder.cli import main\n'
            'rc = main(sys.argv[1:])\n'
            'assert "torch" not in sys.modules, "index --from imported torch"\n'
            'assert "jina" not in sys.modules, "index --from imported jina"\n'
            'sys.exit(rc)\n')
    r = subprocess.run([sys.executable, '-c', code, 'index', str(tmp_path / 'ix'), '--from', str(second),
                        '--model-path', str(ckpt)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert _last(r.stdout) == 'added 3, updated 0, removed 0, unchanged 0, unreadable 0'
    assert len(open_index(tmp_path / 'ix')) == 6
