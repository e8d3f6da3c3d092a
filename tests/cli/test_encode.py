"""`python -m vseimageencoder encode`, run as users run it: a real process on real files."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vseimageencoder
from tests.support.images import reference_batch, write_image_set, write_noise_images
from tests.support.vsepp_release import reference_embed

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_cli(*args, cwd=None, **kw):
    return subprocess.run([sys.executable, '-m', 'vseimageencoder', *map(str, args)], cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=600, **kw)


@pytest.fixture(scope='module')
def image_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp('cli-images')
    return folder, write_image_set(folder)


def test_encode_folder_and_files(tmp_path, image_set, small_release):
    folder, refs = image_set
    ckpt, backbone, fc = small_release
    extra = tmp_path / 'extra.png'
    Image.fromarray(np.full((50, 70, 3), 90, np.uint8)).save(str(extra))
    out = tmp_path / 'out' / 'emb.npy'
    r = run_cli('encode', '--model-path', ckpt, '--batch-size', 3, '-o', out, extra, folder)
    assert r.returncode == 1, r.stderr  # broken.jpg was skipped
    assert 'broken.jpg' in r.stderr and 'skipped' in r.stderr
    names = (tmp_path / 'out' / 'emb.files.txt').read_text().splitlines()[1:]  # after the header
    order = [n for n in sorted(refs, key=lambda n: str(folder / n)) if refs[n] is not None]
    assert names == [str(extra)] + [str(folder / n) for n in order]
    emb = np.load(str(out))
    assert emb.shape == (len(names), 1024) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    pil = [Image.open(str(extra)).convert('RGB')] + [refs[n] for n in order]
    expected = reference_embed(backbone, fc, reference_batch(pil))
    np.testing.assert_allclose(emb, expected, atol=5e-5)
    assert not [p for p in os.listdir(str(tmp_path / 'out')) if p.endswith('.part')]


def test_console_script_installed(tmp_path, small_release):
    exe = os.path.join(os.path.dirname(sys.executable), 'vseimageencoder')
    r = subprocess.run([exe, '--version'], stdout=subprocess.PIPE, universal_newlines=True)
    assert r.returncode == 0 and r.stdout.strip().endswith('0.0.6')


def test_all_good_exit_zero_and_progress(tmp_path, small_release):
    d = tmp_path / 'imgs'
    d.mkdir()
    for i in range(5):
        Image.fromarray(np.full((40, 40, 3), i * 40, np.uint8)).save(str(d / ('%d.png' % i)))
    r = run_cli('encode', '--model-path', small_release[0], '-o', tmp_path / 'e.npy', '--progress', d)
    assert r.returncode == 0, r.stderr
    assert '5/5 images' in r.stderr
    assert np.load(str(tmp_path / 'e.npy')).shape == (5, 1024)


def test_missing_model_gives_download_command(tmp_path):
    # The default model path falls back to the folder above the package, which in a checkout
    # is the repository root, where a user keeps `pretrained/`. Run a copy of the package from
    # a folder of its own, so that what the checkout holds cannot change the outcome.
    pkg_parent = tmp_path / 'site'
    shutil.copytree(str(Path(vseimageencoder.__file__).parent), str(pkg_parent / 'vseimageencoder'),
                    ignore=shutil.ignore_patterns('__pycache__'))
    work = tmp_path / 'work'
    work.mkdir()
    img = work / 'a.png'
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(str(img))
    env = dict(os.environ, PYTHONPATH=str(pkg_parent))
    r = run_cli('encode', '-o', work / 'e.npy', img, cwd=str(work), env=env)
    assert r.returncode == 2
    assert 'vseimageencoder download f30k_vse++_vggfull --dest pretrained' in r.stderr
    # both places looked in are the test's own
    assert str(work / 'pretrained') in r.stderr and str(pkg_parent / 'pretrained') in r.stderr, r.stderr
    assert not (work / 'e.npy').exists()


def test_missing_input_path(tmp_path, small_release):
    r = run_cli('encode', '--model-path', small_release[0], '-o', tmp_path / 'e.npy', tmp_path / 'nope.jpg')
    assert r.returncode == 2 and 'nope.jpg' in r.stderr
    assert not (tmp_path / 'e.npy').exists()


@pytest.mark.parametrize('readers', [0, 2])
def test_interrupt_leaves_no_output(tmp_path, small_release, readers):
    d = tmp_path / 'many'
    d.mkdir()
    for i in range(300):
        Image.fromarray(np.full((24, 24, 3), i % 256, np.uint8)).save(str(d / ('%03d.png' % i)))
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    old = out_dir / 'e.npy'
    old.write_bytes(b'previous result')
    p = subprocess.Popen([sys.executable, '-m', 'vseimageencoder', 'encode', '--model-path',
                          str(small_release[0]), '--batch-size', '2', '--readers', str(readers),
                          '-o', str(old), str(d)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until rows are being streamed out
        parts = [f for f in out_dir.iterdir() if f.name.endswith('.part') and '.npy.' in f.name
                 and f.stat().st_size > 128]
        if parts or p.poll() is not None:
            break
        time.sleep(0.05)
    assert p.poll() is None, 'finished before it could be interrupted'
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert 'interrupted' in err
    assert old.read_bytes() == b'previous result'
    assert sorted(f.name for f in out_dir.iterdir()) == ['e.npy']


def test_memory_bounded_by_batch_size(tmp_path, small_release):
    """Peak RSS with 10x the images stays within a few MB of the small run."""
    def make(n, name):
        d = tmp_path / name
        d.mkdir()
        rng = np.random.RandomState(n)
        for i in range(n):
            Image.fromarray(rng.randint(0, 256, (16, 16, 3)).astype(np.uint8)).save(str(d / ('%05d.png' % i)))
        return d

    code = ('import resource, sys; from vseimageencoder.cli import main; rc = main(sys.argv[1:]); '
            'sys.stderr.write("MAXRSS_KB %d\\n" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); '
            'sys.exit(rc)')
    peaks = []
    for n in (40, 400):
        d = make(n, 'set%d' % n)
        r = subprocess.run([sys.executable, '-c', code, 'encode', '--model-path', str(small_release[0]),
                            '--batch-size', '8', '-o', str(tmp_path / ('e%d.npy' % n)), str(d)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        assert r.returncode == 0, r.stderr
        assert np.load(str(tmp_path / ('e%d.npy' % n)), mmap_mode='r').shape == (n, 1024)
        peaks.append(int(r.stderr.rsplit('MAXRSS_KB', 1)[1].split()[0]))
    # Holding 360 more transformed images (600 KB each) would add over 200 MB. The reader
    # threads' malloc arenas make the peak of either run vary by some tens of MB (58 MB
    # apart seen once on a clean clone), so the bound sits between that and 200 MB.
    assert peaks[1] - peaks[0] < 120 * 1024, peaks


@pytest.mark.jina09
def test_encoder_uint8_path(small_release, image_set):
    from vseimageencoder import VSEImageEncoder
    folder, refs = image_set
    ckpt, backbone, fc = small_release
    pil = [refs['photo.jpg'].resize((330, 250)), refs['gray.png'].resize((330, 250))]
    hwc = np.stack([np.asarray(im) for im in pil])
    enc = VSEImageEncoder(model_path=str(ckpt), channel_axis=-1)
    out = enc.encode(hwc)
    np.testing.assert_allclose(out, reference_embed(backbone, fc, reference_batch(pil)), atol=5e-5)
    chw = VSEImageEncoder(model_path=str(ckpt), channel_axis=1).encode(np.ascontiguousarray(hwc.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(chw, out, atol=1e-6)


def test_readers_keep_input_order_and_skip_bad_files(tmp_path, small_release):
    """Reader threads finish out of order; rows must not. Bad files are named wherever they are."""
    from tests.support.photos import write_photo
    d = tmp_path / 'mixed'
    d.mkdir()
    expected = []
    for i in range(23):
        p = d / ('%02d.jpg' % i)
        if i % 6 == 2:
            p.write_bytes(b'\xff\xd8\xff\xe0 not a jpeg %d' % i)
        else:
            # Sizes vary a lot, so later small files are ready before earlier big ones.
            write_photo(p, 1400 if i % 4 == 0 else 200, 900 if i % 4 == 0 else 150, seed=i,
                        orientation=6 if i % 5 == 0 else 0)
            expected.append(str(p))
    runs = {}
    for readers in (0, 3):
        out = tmp_path / ('r%d' % readers) / 'e.npy'
        r = run_cli('encode', '--model-path', small_release[0], '--batch-size', 4, '--readers', readers,
                    '-o', out, d)
        assert r.returncode == 1, r.stderr
        for i in range(2, 23, 6):
            assert ('%02d.jpg' % i) in r.stderr
        assert '4 image(s) could not be read' in r.stderr
        assert (out.parent / 'e.files.txt').read_text().splitlines()[1:] == expected
        runs[readers] = np.load(str(out))
    assert runs[0].shape == (len(expected), 1024)
    # Same rows in the same order; not bit for bit: lanes batch differently after a skipped
    # file and run the tower on fewer threads, which may round the last bits differently.
    np.testing.assert_allclose(runs[3], runs[0], rtol=0, atol=1e-5)


def test_resize_modes_on_large_photos(tmp_path, small_release):
    """--resize exact is the faithful transform; the default (fast) stays within cosine 0.999."""
    from tests.support.photos import write_photo
    from vseimageencoder.images.read import read_image
    ckpt, backbone, fc = small_release
    d = tmp_path / 'big'
    files = [write_photo(d / 'a.jpg', 2400, 1600, seed=1), write_photo(d / 'b.jpg', 2049, 1537, seed=2, orientation=3),
             write_photo(d / 'c.png', 1100, 1500, seed=3)]
    want = reference_embed(backbone, fc, reference_batch([read_image(f) for f in files]))
    got = {}
    for mode in ('exact', 'fast', None):
        out = tmp_path / ('%s.npy' % mode)
        r = run_cli('encode', '--model-path', ckpt, '-o', out, d, *(['--resize', mode] if mode else []))
        assert r.returncode == 0, r.stderr
        got[mode] = np.load(str(out))
    np.testing.assert_allclose(got['exact'], want, atol=5e-5)
    np.testing.assert_array_equal(got[None], got['fast'])  # fast is the default
    assert (got['fast'] * want).sum(1).min() >= 0.999


def test_bad_reading_flags(tmp_path, small_release):
    img = tmp_path / 'a.png'
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(str(img))
    r = run_cli('encode', '--model-path', small_release[0], '--readers', -1, '-o', tmp_path / 'e.npy', img)
    assert r.returncode == 2 and '--readers' in r.stderr and '-1' in r.stderr
    r = run_cli('encode', '--model-path', small_release[0], '--resize', 'nearest', '-o', tmp_path / 'e.npy', img)
    assert r.returncode == 2 and 'nearest' in r.stderr
    assert not (tmp_path / 'e.npy').exists()


def test_fuse_flag_same_rows_and_logged(tmp_path, small_release):
    d = tmp_path / 'imgs'
    write_noise_images(d, 5, 60, 80, seed=6)
    rows = {}
    for choice in ('on', 'off'):
        out = tmp_path / ('%s.npy' % choice)
        r = run_cli('encode', '--model-path', small_release[0], '--batch-size', 2, '--fuse', choice, '-o', out, d)
        assert r.returncode == 0, r.stderr
        rows[choice] = np.load(str(out))
        assert ('runs fused' in r.stderr) == (choice == 'on'), r.stderr
    np.testing.assert_allclose(rows['on'], rows['off'], atol=1e-4)
    r = run_cli('encode', '--model-path', small_release[0], '--fuse', 'maybe', '-o', tmp_path / 'x.npy', d)
    assert r.returncode == 2 and '--fuse' in r.stderr
