"""`vseimageencoder download` against a real HTTP server on 127.0.0.1 serving runs.tar and
vocab.tar in the release layout (the vocabularies written as Python 2.7 wrote them)."""
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.support.archive_server import ArchiveServer, write_release_archive
from tests.support.py27_pickle import vocab_words, write_py27_vocab
from vseimageencoder.release import weights
from vseimageencoder.release.checkpoint import CheckpointIntegrityError, load_tower

NAME = 'f30k_vse++_resnet'
VOCAB = 'f30k_vocab.pkl'
MODEL_FILES = ['model_best.pth.tar', 'model_best.pth.tar.json']
VOCAB_FILES = [VOCAB, VOCAB + '.json']


@pytest.fixture(scope='module')
def archive(tmp_path_factory, small_release):
    ckpt = small_release[0]
    path = tmp_path_factory.mktemp('archive') / 'runs.tar'
    rng = np.random.RandomState(0)
    write_release_archive(path, {
        'runs/coco_vse++/model_best.pth.tar': rng.bytes(50_000),
        'runs/%s/model_best.pth.tar' % NAME: ckpt,
        'runs/%s/checkpoint.pth.tar' % NAME: rng.bytes(1000),
        # A large member after the wanted one (larger than loopback socket buffers): a
        # streaming download stops reading before it.
        'runs/f30k_vse++_vggfull/model_best.pth.tar': bytes(64 << 20),
    })
    return path, ckpt


@pytest.fixture(scope='module')
def vocab_archive(tmp_path_factory):
    """vocab.tar as released: vocab/<data_name>_vocab.pkl members (no coco_precomp one here)."""
    folder = tmp_path_factory.mktemp('vocab')
    f30k = write_py27_vocab(folder / VOCAB, vocab_words(3000))
    coco = write_py27_vocab(folder / 'coco_vocab.pkl', vocab_words(500)[::-1])
    path = write_release_archive(folder / 'vocab.tar', {
        'vocab/coco_vocab.pkl': coco,
        'vocab/f30k_precomp_vocab.pkl': coco,
        'vocab/f30k_vocab.pkl': f30k,
        # Large, after the wanted member: a streaming download never reads it.
        'vocab/zz_large.pkl': bytes(32 << 20),
    })
    return path, f30k


@pytest.fixture()
def both(archive, vocab_archive):
    return {'/runs.tar': archive[0], '/vocab.tar': vocab_archive[0]}


def run_cli(*args):
    return subprocess.run([sys.executable, '-m', 'vseimageencoder', 'download', *map(str, args)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=300)


def test_download_byte_exact_streaming_and_recorded(tmp_path, archive):
    path, ckpt = archive
    dest = tmp_path / 'pretrained'
    with ArchiveServer(path) as server:
        r = run_cli(NAME, '--source', server.url, '--dest', dest, '--no-vocab')
    assert r.returncode == 0, r.stderr
    target = dest / 'model_best.pth.tar'
    assert target.read_bytes() == ckpt.read_bytes()
    # Stopped once the member was out: most of the 64 MB member after it was never sent.
    assert server.bytes_sent < path.stat().st_size - (32 << 20)
    rec = json.loads((dest / 'model_best.pth.tar.json').read_text())
    assert rec['model'] == NAME and rec['source'] == server.url
    assert rec['size'] == ckpt.stat().st_size and rec['sha256'] == weights.sha256_of(ckpt)
    assert sorted(os.listdir(str(dest))) == MODEL_FILES
    tower, opts = load_tower(target)  # the fetched file loads, its record verified
    assert opts.cnn_type == 'resnet18'


def test_cache_hit_needs_no_network(tmp_path, both):
    dest = tmp_path / 'pretrained'
    with ArchiveServer(both) as server:
        runs, vocab = server.url_for('/runs.tar'), server.url_for('/vocab.tar')
        assert run_cli(NAME, '--source', runs, '--vocab-source', vocab, '--dest', dest).returncode == 0
    # The server is gone; the port refuses connections.
    r = run_cli(NAME, '--source', runs, '--vocab-source', vocab, '--dest', dest)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count('nothing fetched') == 2  # the model and its vocabulary
    # Another model trained on f30k shares the vocabulary: still no network for it.
    r = run_cli('f30k_vse++_vggfull', '--vocab-only', '--vocab-source', vocab, '--dest', dest)
    assert r.returncode == 0 and 'nothing fetched' in r.stderr, r.stderr
    # A different model is not a cache hit, nor is another dataset's vocabulary.
    r = run_cli('f30k_vse++_vggfull', '--source', runs, '--dest', dest, '--no-vocab')
    assert r.returncode == 1 and 'cannot fetch' in r.stderr
    r = run_cli('coco_vse++_resnet_restval_finetune', '--vocab-only', '--vocab-source', vocab, '--dest', dest)
    assert r.returncode == 1 and 'cannot fetch' in r.stderr
    assert sorted(os.listdir(str(dest))) == sorted(MODEL_FILES + VOCAB_FILES)


def test_broken_transfer_leaves_nothing(tmp_path, archive):
    path, ckpt = archive
    dest = tmp_path / 'pretrained'
    with ArchiveServer(path, truncate_at=60_000 + ckpt.stat().st_size // 2) as server:
        r = run_cli(NAME, '--source', server.url, '--dest', dest, '--no-vocab')
    assert r.returncode == 1
    assert 'nothing written' in r.stderr and NAME in r.stderr
    assert not dest.exists()  # not even the folder it created


def test_unknown_model_named_with_known_list(tmp_path):
    r = run_cli('f30k_vse+++_typo', '--dest', tmp_path / 'p')
    assert r.returncode == 2
    assert "'f30k_vse+++_typo'" in r.stderr and 'f30k_vse++_vggfull' in r.stderr
    assert not (tmp_path / 'p').exists()


def test_member_missing_from_archive(tmp_path, archive, small_release):
    other = write_release_archive(tmp_path / 'other.tar', {'runs/x/model_best.pth.tar': b'abc'})
    r = run_cli(NAME, '--source', other, '--dest', tmp_path / 'p', '--no-vocab')
    assert r.returncode == 1 and 'has no member runs/%s/model_best.pth.tar' % NAME in r.stderr
    assert not (tmp_path / 'p').exists()


def test_checksum_mismatch_is_caught_and_refetched(tmp_path, archive):
    path, ckpt = archive
    dest = tmp_path / 'pretrained'
    r = run_cli(NAME, '--source', path, '--dest', dest, '--no-vocab')  # a local path works too
    assert r.returncode == 0, r.stderr
    target = dest / 'model_best.pth.tar'
    data = bytearray(target.read_bytes())
    data[-100] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(CheckpointIntegrityError, match='sha256') as e:
        load_tower(target)
    assert str(target) in str(e.value)
    r = run_cli(NAME, '--source', path, '--dest', dest, '--no-vocab')
    assert r.returncode == 0 and 'fetching it again' in r.stderr
    assert target.read_bytes() == ckpt.read_bytes()


def test_progress_on_request(tmp_path, archive):
    path, _ = archive
    r = run_cli(NAME, '--source', path, '--dest', tmp_path / 'p', '--progress', '--no-vocab')
    assert r.returncode == 0 and 'MB/s' in r.stderr
    r = run_cli(NAME, '--source', path, '--dest', tmp_path / 'q', '--no-vocab')
    assert 'MB/s' not in r.stderr  # quiet when stderr is not a terminal


def test_registry_is_data():
    m = weights.released_model('f30k_vse++_vggfull')
    assert m.member == 'runs/f30k_vse++_vggfull/model_best.pth.tar'
    assert m.backbone == 'vgg19' and m.source == weights.RELEASE_ARCHIVE_URL
    assert m.data_name == 'f30k' and m.vocab_member == 'vocab/f30k_vocab.pkl'
    assert m.vocab_file == weights.vocab_file_name('f30k') == 'f30k_vocab.pkl'
    assert m.vocab_source == weights.VOCAB_ARCHIVE_URL
    assert weights.VOCAB_ARCHIVE_URL == 'http://www.cs.toronto.edu/~faghri/vsepp/vocab.tar'
    data_names = {n: weights.released_model(n).data_name for n in weights.RELEASED_MODELS}
    assert {n for n, d in data_names.items() if d == 'f30k'} == {n for n in data_names if n.startswith('f30k_')}
    assert data_names['coco_vse++_resnet_restval_finetune'] == 'coco'
    assert data_names['coco_vse++_vggfull_restval_finetune'] == 'coco'
    assert data_names['coco_vse++'] == 'coco_precomp'
    with pytest.raises(weights.UnknownModelError, match='known models'):
        weights.released_model('x')


@pytest.mark.parametrize('bad', ['', '../f30k', 'a/b', '.hidden', 'f30k ', 'x\\y', None])
def test_vocab_file_name_refuses_paths(bad):
    # data_name comes out of a checkpoint file: it must never name a path.
    with pytest.raises(ValueError, match='not a VSE\\+\\+ dataset name'):
        weights.vocab_file_name(bad)


def test_vocab_download_command():
    cmd = weights.vocab_download_command('coco_precomp', '/tmp/my models')
    assert cmd == "vseimageencoder download coco_vse++ --vocab-only --dest '/tmp/my models'"
    assert weights.vocab_download_command('f8k', 'x') is None


# ----------------------------------------------------------------------- with the vocabulary

def test_model_and_vocab_into_one_folder(tmp_path, both, archive, vocab_archive):
    from vseimageencoder.release.vocab import read_vocabulary, resolve_vocabulary_path

    dest = tmp_path / 'pretrained'
    with ArchiveServer(both) as server:
        r = run_cli(NAME, '--source', server.url_for('/runs.tar'),
                    '--vocab-source', server.url_for('/vocab.tar'), '--dest', dest)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(str(dest))) == sorted(MODEL_FILES + VOCAB_FILES)
    assert (dest / VOCAB).read_bytes() == vocab_archive[1].read_bytes()
    # Streamed: reading stopped once the member was out, before the 32 MB one after it.
    assert server.sent['/vocab.tar'] < vocab_archive[0].stat().st_size - (16 << 20)
    rec = json.loads((dest / (VOCAB + '.json')).read_text())
    assert rec['vocab'] == 'f30k' and rec['member'] == 'vocab/f30k_vocab.pkl'
    assert rec['source'] == server.url_for('/vocab.tar')
    assert rec['size'] == (dest / VOCAB).stat().st_size and rec['sha256'] == weights.sha256_of(dest / VOCAB)
    assert weights.verify_record(dest / VOCAB) == rec
    # The folder is what both encoders load: the checkpoint, and the vocabulary beside it.
    checkpoint = dest / 'model_best.pth.tar'
    load_tower(checkpoint)
    assert resolve_vocabulary_path(None, checkpoint, 'f30k') == dest / VOCAB
    assert len(read_vocabulary(dest / VOCAB)) == 3004


def test_vocab_record_catches_a_changed_file_and_refetches(tmp_path, vocab_archive):
    dest = tmp_path / 'p'
    r = run_cli(NAME, '--vocab-only', '--vocab-source', 'file://%s' % vocab_archive[0], '--dest', dest)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(str(dest))) == VOCAB_FILES  # --vocab-only: no model
    target = dest / VOCAB
    target.write_bytes(target.read_bytes()[:-1] + b'!')
    with pytest.raises(weights.WeightsError, match='sha256') as e:
        weights.verify_record(target)
    assert str(target) in str(e.value)
    r = run_cli(NAME, '--vocab-only', '--vocab-source', vocab_archive[0], '--dest', dest)
    assert r.returncode == 0 and 'fetching it again' in r.stderr
    assert target.read_bytes() == vocab_archive[1].read_bytes()


def test_broken_vocab_transfer_keeps_the_model_and_leaves_no_vocab(tmp_path, both, archive):
    dest = tmp_path / 'pretrained'
    with tarfile.open(str(both['/vocab.tar'])) as tar:  # cut vocab.tar inside the f30k member
        member = tar.getmember('vocab/' + VOCAB)
    cut = {'/vocab.tar': member.offset_data + member.size // 2}
    with ArchiveServer(both, truncate_at=cut) as server:
        r = run_cli(NAME, '--source', server.url_for('/runs.tar'),
                    '--vocab-source', server.url_for('/vocab.tar'), '--dest', dest)
    assert r.returncode == 1
    assert 'broke off' in r.stderr or 'failed after' in r.stderr, r.stderr
    assert 'no vocabulary written' in r.stderr and 'kept (complete and verified)' in r.stderr
    assert '--vocab-only' in r.stderr
    assert sorted(os.listdir(str(dest))) == MODEL_FILES  # no vocabulary, no temporary file
    assert (dest / 'model_best.pth.tar').read_bytes() == archive[1].read_bytes()
    # A second run fetches only what is missing.
    with ArchiveServer(both) as server:
        r = run_cli(NAME, '--source', server.url_for('/runs.tar'),
                    '--vocab-source', server.url_for('/vocab.tar'), '--dest', dest)
    assert r.returncode == 0, r.stderr
    assert server.sent['/runs.tar'] == 0 and 'nothing fetched' in r.stderr
    assert sorted(os.listdir(str(dest))) == sorted(MODEL_FILES + VOCAB_FILES)


def test_vocab_member_missing_is_named(tmp_path, archive, vocab_archive):
    # coco_vse++ was trained on precomputed features: its vocabulary is coco_precomp's,
    # which this vocab.tar lacks.
    dest = tmp_path / 'p'
    r = run_cli('coco_vse++', '--source', archive[0], '--vocab-source', vocab_archive[0], '--dest', dest)
    assert r.returncode == 1
    assert 'has no member vocab/coco_precomp_vocab.pkl' in r.stderr and str(vocab_archive[0]) in r.stderr
    assert sorted(os.listdir(str(dest))) == MODEL_FILES  # the model arrived and stays
    r = run_cli('coco_vse++', '--vocab-only', '--vocab-source', vocab_archive[0], '--dest', tmp_path / 'q')
    assert r.returncode == 1 and 'has no member vocab/coco_precomp_vocab.pkl' in r.stderr
    assert 'nothing written' in r.stderr and not (tmp_path / 'q').exists()


def test_vocab_flags_are_exclusive(tmp_path):
    r = run_cli(NAME, '--no-vocab', '--vocab-only', '--dest', tmp_path / 'p')
    assert r.returncode == 2 and 'not allowed with' in r.stderr


def test_download_api_returns_checkpoint_and_fetches_vocab(tmp_path, archive, vocab_archive):
    target = weights.download(NAME, str(archive[0]), tmp_path, vocab_source=str(vocab_archive[0]))
    assert target == tmp_path / 'model_best.pth.tar'
    assert weights.verify_record(tmp_path / VOCAB)['vocab'] == 'f30k'
    with pytest.raises(weights.VocabularyDownloadError) as e:
        weights.download('coco_vse++', str(archive[0]), tmp_path / 'c', vocab_source=str(vocab_archive[0]))
    assert e.value.checkpoint == tmp_path / 'c' / 'model_best.pth.tar' and e.value.checkpoint.is_file()


# ----------------------------------------------------------------------- hostile sources

class DripServer:
    """A real HTTP server on 127.0.0.1 announcing ``length`` bytes of a tar and sending
    ``head`` at once, then one byte every ``every`` seconds (a stalled or hostile mirror),
    or ``rate`` bytes a second when given."""

    def __init__(self, head: bytes, length: int, every: float = 2.0, rate: int = 0):
        import http.server
        import threading

        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header('Content-Length', str(length))
                self.end_headers()
                try:
                    self.wfile.write(head)
                    self.wfile.flush()
                    while not server.stop.is_set():
                        if rate:
                            self.wfile.write(bytes(rate // 10))
                            server.stop.wait(0.1)
                        else:
                            self.wfile.write(b'\0')
                            self.wfile.flush()
                            server.stop.wait(every)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.stop = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.url = 'http://127.0.0.1:%d/runs.tar' % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def member_header(name: str, size: int) -> bytes:
    """A tar header for ``name`` declaring ``size`` bytes (GNU base-256 beyond 8 GB)."""
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def _timed_cli(*args):
    import time
    start = time.monotonic()
    r = run_cli(*args)
    return r, time.monotonic() - start


def test_stalled_source_fails_fast_and_leaves_nothing(tmp_path):
    # One byte every 2 s: each receive succeeds, so a per-read timeout never fires (unguarded, it
    # ran past 80 s). The stall timeout counts bytes per window instead.
    dest = tmp_path / 'new' / 'pretrained'
    member = 'runs/%s/model_best.pth.tar' % NAME
    with DripServer(member_header(member, 10_000_000), 10_000_512, every=2.0) as server:
        r, took = _timed_cli(NAME, '--source', server.url, '--dest', dest, '--no-vocab',
                             '--stall-timeout', '3')
    assert r.returncode == 1, r.stderr
    assert 'stalled' in r.stderr and server.url in r.stderr
    assert took < 20, took
    assert not (tmp_path / 'new').exists()  # no empty folders left behind


def test_overall_deadline(tmp_path):
    # 200 KB/s is no stall, but 10 MB would take 50 s: the deadline ends it.
    member = 'runs/%s/model_best.pth.tar' % NAME
    with DripServer(member_header(member, 10_000_000), 10_000_512, rate=200_000) as server:
        r, took = _timed_cli(NAME, '--source', server.url, '--dest', tmp_path / 'p', '--no-vocab',
                             '--deadline', '2', '--stall-timeout', '30')
    assert r.returncode == 1, r.stderr
    assert 'deadline' in r.stderr
    assert took < 20, took
    assert not (tmp_path / 'p').exists()


def test_member_declaring_too_many_bytes_is_refused_before_writing(tmp_path):
    # Unguarded, a member declaring 10^11 bytes is written until the disk or the server gives out.
    member = 'runs/%s/model_best.pth.tar' % NAME
    archive = tmp_path / 'huge.tar'
    archive.write_bytes(member_header(member, 10 ** 11) + bytes(1 << 20))
    dest = tmp_path / 'p'
    r = run_cli(NAME, '--source', archive, '--dest', dest, '--no-vocab')
    assert r.returncode == 1, r.stderr
    assert 'declares 100000000000 bytes, over the limit of %d' % weights.MAX_MODEL_BYTES in r.stderr
    assert not dest.exists()


def test_max_bytes_flag_overrides_the_cap(tmp_path, archive):
    path, ckpt = archive
    with pytest.raises(weights.DownloadTooLargeError, match='over the limit of %d' % (ckpt.stat().st_size - 1)):
        weights.download(NAME, str(path), tmp_path / 'p', vocab=False, max_bytes=ckpt.stat().st_size - 1)
    assert not (tmp_path / 'p').exists()
    r = run_cli(NAME, '--source', path, '--dest', tmp_path / 'p', '--no-vocab',
                '--max-bytes', str(ckpt.stat().st_size))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'p' / 'model_best.pth.tar').read_bytes() == ckpt.read_bytes()


def test_member_names_match_exactly(tmp_path):
    # Unguarded, '../runs/<name>/model_best.pth.tar' is taken for the model (leading dots stripped).
    other = tmp_path / 'other.tar'
    with tarfile.open(str(other), 'w') as tar:
        for name in ('../runs/%s/model_best.pth.tar' % NAME, '.runs/%s/model_best.pth.tar' % NAME):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b'abc'))
    with pytest.raises(weights.WeightsError, match=re.escape('has no member runs/%s/model_best.pth.tar' % NAME)):
        weights.download(NAME, str(other), tmp_path / 'p', vocab=False)
    # './runs/...' (tar run as "tar cf runs.tar ./runs") is the same member.
    dotted = tmp_path / 'dotted.tar'
    with tarfile.open(str(dotted), 'w') as tar:
        info = tarfile.TarInfo('./runs/%s/model_best.pth.tar' % NAME)
        info.size = 3
        tar.addfile(info, io.BytesIO(b'abc'))
    weights.download(NAME, str(dotted), tmp_path / 'q', vocab=False)
    assert (tmp_path / 'q' / 'model_best.pth.tar').read_bytes() == b'abc'


def test_sigterm_removes_the_part_file_and_the_new_folder(tmp_path):
    import signal
    import time
    dest = tmp_path / 'pretrained'
    member = 'runs/%s/model_best.pth.tar' % NAME
    with DripServer(member_header(member, 50_000_000) + bytes(1 << 20), 50_000_512,
                    rate=1_000_000) as server:
        proc = subprocess.Popen([sys.executable, '-m', 'vseimageencoder', 'download', NAME,
                                 '--source', server.url, '--dest', str(dest), '--no-vocab'],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (
                    dest.exists() and any(n.endswith('.part') for n in os.listdir(str(dest)))):
                time.sleep(0.05)
            parts = [n for n in os.listdir(str(dest)) if n.endswith('.part')]
            assert parts, 'no .part file appeared'
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    err = proc.stderr.read()
    assert proc.returncode == 143, err
    assert 'terminated' in err
    assert not dest.exists()  # not: the .part file left behind


def test_failed_download_removes_only_folders_it_created(tmp_path):
    # The authors' URL is not reachable from here; a 404 on 127.0.0.1 stands for any failure.
    existing = tmp_path / 'kept'
    existing.mkdir()
    with ArchiveServer({'/other.tar': tmp_path / 'missing.tar'}) as server:
        url = server.url_for('/runs.tar')
        r = run_cli(NAME, '--source', url, '--dest', tmp_path / 'a' / 'b' / 'pretrained', '--no-vocab')
        assert r.returncode == 1 and 'cannot fetch' in r.stderr and '404' in r.stderr
        with pytest.raises(weights.WeightsError, match='404'):
            weights.download(NAME, url, existing, vocab=False)
    assert not (tmp_path / 'a').exists()
    assert existing.is_dir() and os.listdir(str(existing)) == []


def test_sha256_is_read_once_and_follows_every_change(tmp_path, monkeypatch):
    import hashlib
    import os
    from vseimageencoder.release import weights
    p = tmp_path / 'model_best.pth.tar'
    p.write_bytes(b'a' * 5000)
    assert weights.sha256_of(p) == hashlib.sha256(b'a' * 5000).hexdigest()
    reads = []
    real = hashlib.sha256
    monkeypatch.setattr(weights.hashlib, 'sha256', lambda *a: reads.append(1) or real(*a))
    assert weights.sha256_of(str(p)) == real(b'a' * 5000).hexdigest()
    assert reads == []  # the same file, unchanged: remembered, not read again
    # Same size, new content, even with the old modification time put back: a new digest.
    st = os.stat(str(p))
    p.write_bytes(b'b' * 5000)
    os.utime(str(p), ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.sha256_of(p) == real(b'b' * 5000).hexdigest() and reads == [1]
    # Replaced by another file under the same name (a new inode): a new digest.
    q = tmp_path / 'other'
    q.write_bytes(b'c' * 5000)
    os.replace(str(q), str(p))
    assert weights.sha256_of(p) == real(b'c' * 5000).hexdigest() and reads == [1, 1]
