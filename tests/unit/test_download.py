"""`vseimageencoder download` against a real HTTP server on 127.0.0.1."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.archive_server import ArchiveServer, write_release_archive
from vseimageencoder import weights
from vseimageencoder.checkpoint import CheckpointIntegrityError, load_tower

NAME = 'f30k_vse++_resnet'


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


def run_cli(*args):
    return subprocess.run([sys.executable, '-m', 'vseimageencoder', 'download', *map(str, args)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=300)


def test_download_byte_exact_streaming_and_recorded(tmp_path, archive):
    path, ckpt = archive
    dest = tmp_path / 'pretrained'
    with ArchiveServer(path) as server:
        r = run_cli(NAME, '--source', server.url, '--dest', dest)
    assert r.returncode == 0, r.stderr
    target = dest / 'model_best.pth.tar'
    assert target.read_bytes() == ckpt.read_bytes()
    # Stopped once the member was out: most of the 64 MB member after it was never sent.
    assert server.bytes_sent < path.stat().st_size - (32 << 20)
    rec = json.loads((dest / 'model_best.pth.tar.json').read_text())
    assert rec['model'] == NAME and rec['source'] == server.url
    assert rec['size'] == ckpt.stat().st_size and rec['sha256'] == weights.sha256_of(ckpt)
    assert sorted(os.listdir(str(dest))) == ['model_best.pth.tar', 'model_best.pth.tar.json']
    tower, opts = load_tower(target)  # the fetched file loads, its record verified
    assert opts.cnn_type == 'resnet18'


def test_cache_hit_needs_no_network(tmp_path, archive):
    path, ckpt = archive
    dest = tmp_path / 'pretrained'
    with ArchiveServer(path) as server:
        assert run_cli(NAME, '--source', server.url, '--dest', dest).returncode == 0
        url = server.url
    # The server is gone; the port refuses connections.
    r = run_cli(NAME, '--source', url, '--dest', dest)
    assert r.returncode == 0, r.stderr
    assert 'nothing fetched' in r.stderr
    # A different model is not a cache hit.
    r = run_cli('f30k_vse++_vggfull', '--source', url, '--dest', dest)
    assert r.returncode == 1 and 'cannot fetch' in r.stderr


def test_broken_transfer_leaves_nothing(tmp_path, archive):
    path, ckpt = archive
    dest = tmp_path / 'pretrained'
    with ArchiveServer(path, truncate_at=60_000 + ckpt.stat().st_size // 2) as server:
        r = run_cli(NAME, '--source', server.url, '--dest', dest)
    assert r.returncode == 1
    assert 'nothing written' in r.stderr and NAME in r.stderr
    assert os.listdir(str(dest)) == []


def test_unknown_model_named_with_known_list(tmp_path):
    r = run_cli('f30k_vse+++_typo', '--dest', tmp_path / 'p')
    assert r.returncode == 2
    assert "'f30k_vse+++_typo'" in r.stderr and 'f30k_vse++_vggfull' in r.stderr
    assert not (tmp_path / 'p').exists()


def test_member_missing_from_archive(tmp_path, archive, small_release):
    other = write_release_archive(tmp_path / 'other.tar', {'runs/x/model_best.pth.tar': b'abc'})
    r = run_cli(NAME, '--source', other, '--dest', tmp_path / 'p')
    assert r.returncode == 1 and 'has no member runs/%s/model_best.pth.tar' % NAME in r.stderr
    assert os.listdir(str(tmp_path / 'p')) == []


def test_checksum_mismatch_is_caught_and_refetched(tmp_path, archive):
    path, ckpt = archive
    dest = tmp_path / 'pretrained'
    r = run_cli(NAME, '--source', path, '--dest', dest)  # a local path works as a source too
    assert r.returncode == 0, r.stderr
    target = dest / 'model_best.pth.tar'
    data = bytearray(target.read_bytes())
    data[-100] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(CheckpointIntegrityError, match='sha256') as e:
        load_tower(target)
    assert str(target) in str(e.value)
    r = run_cli(NAME, '--source', path, '--dest', dest)
    assert r.returncode == 0 and 'fetching it again' in r.stderr
    assert target.read_bytes() == ckpt.read_bytes()


def test_progress_on_request(tmp_path, archive):
    path, _ = archive
    r = run_cli(NAME, '--source', path, '--dest', tmp_path / 'p', '--progress')
    assert r.returncode == 0 and 'MB/s' in r.stderr
    r = run_cli(NAME, '--source', path, '--dest', tmp_path / 'q')
    assert 'MB/s' not in r.stderr  # quiet when stderr is not a terminal


def test_registry_is_data():
    m = weights.released_model('f30k_vse++_vggfull')
    assert m.member == 'runs/f30k_vse++_vggfull/model_best.pth.tar'
    assert m.backbone == 'vgg19' and m.source == weights.RELEASE_ARCHIVE_URL
    with pytest.raises(weights.UnknownModelError, match='known models'):
        weights.released_model('x')
