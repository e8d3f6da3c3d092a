"""Hostile and odd image inputs: FIFOs, devices and sockets
named as images, Ctrl-C while a reader is blocked, formats outside the allow-list, and
images whose decode would take gigabytes. Runs the real ``encode`` command, real reader
threads on real FIFOs and real files; memory is measured in child processes."""
import io
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.images import write_noise_images
from vseimageencoder.images import read, transform

ENV = dict(os.environ, PYTHONUNBUFFERED='1')


def write_png_stream(path: Path, width: int, height: int) -> Path:
    """An all-black RGB PNG written row by row (never ``height x width`` in memory): the
    issue's 12,500 x 12,500 picture is 469 MB decoded, under 0.5 MB on disk."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = bytes(1 + 3 * width)
    body = b''.join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
                     + chunk(b'IDAT', body) + chunk(b'IEND', b''))
    return path


def run_child(code: str, *args, limit_mb: int = 0, timeout: float = 120):
    """Run ``code`` in a child Python (address space capped at ``limit_mb`` when given);
    it prints its result; the peak RSS in MB follows on the last line."""
    prog = textwrap.dedent('''
        import resource, sys
        def peak_mb():  # this process's own peak (ru_maxrss would include the parent's at fork)
            for line in open('/proc/self/status'):
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) // 1024
        if int(sys.argv[1]):
            resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]) << 20,) * 2)
        def main(args):
        %s
        try:
            out = main(sys.argv[2:])
        except Exception as e:
            out = type(e).__name__ + ': ' + str(e)
        sys.stdout.write(str(out).replace('\\n', ' ') + '\\n')
        sys.stdout.write(str(peak_mb()) + '\\n')
    ''') % textwrap.indent(textwrap.dedent(code), '    ')
    r = subprocess.run([sys.executable, '-c', prog, str(limit_mb), *map(str, args)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=timeout)
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and len(lines) >= 2, (r.returncode, r.stdout, r.stderr[-2000:])
    return lines[-2], int(lines[-1])


# ----------------------------------------------------------------------- not regular files

def test_fifo_device_socket_and_directory_are_refused_by_name(tmp_path):
    fifo = tmp_path / 'photo.jpg'
    os.mkfifo(str(fifo))
    dev = tmp_path / 'zero.jpg'
    dev.symlink_to('/dev/zero')
    sock_path = tmp_path / 's.jpg'
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    folder = tmp_path / 'dir.jpg'
    folder.mkdir()
    try:
        for path, kind in ((fifo, 'FIFO'), (dev, 'character device'), (sock_path, 'socket'),
                           (folder, 'directory')):
            start = time.monotonic()
            with pytest.raises(read.NotARegularImageError, match=kind) as e:
                transform.transform(path)
            assert str(path) in str(e.value)
            assert time.monotonic() - start < 5
    finally:
        sock.close()


def test_encode_skips_a_fifo_named_like_a_photo(tmp_path, small_release):
    # Unguarded, the run hangs for good: a reader blocks opening the FIFO.
    photos = tmp_path / 'photos'
    photos.mkdir()
    Image.fromarray(np.full((64, 80, 3), 120, np.uint8)).save(str(photos / 'a.jpg'))
    os.mkfifo(str(photos / 'photo.jpg'))
    out = tmp_path / 'emb.npy'
    r = subprocess.run([sys.executable, '-m', 'vseimageencoder', 'encode', str(photos), '-o', str(out),
                        '--model-path', str(small_release[0]), '--readers', '2'],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=180, env=ENV)
    assert r.returncode == 1, r.stderr  # one skipped
    assert 'photo.jpg' in r.stderr and 'FIFO' in r.stderr
    assert np.load(str(out)).shape == (1, 1024)


_BLOCKED_READER = '''
    import os, sys, time
    from vseimageencoder.pipeline.prefetch import PrefetchReader
    fifo = args[0]

    def load(path):
        with open(path, 'rb') as f:  # a plain blocking open: blocks until a writer comes
            return f.read()

    try:
        with PrefetchReader([fifo, fifo], load, readers=2, ahead=2) as items:
            sys.stdout.write('ready\\n')
            sys.stdout.flush()
            for _ in items:
                pass
    except KeyboardInterrupt:
        return 'interrupted'
    return 'finished'
'''


def test_ctrl_c_ends_a_run_whose_readers_are_blocked_in_io(tmp_path):
    fifo = tmp_path / 'blocked.jpg'
    os.mkfifo(str(fifo))
    prog = textwrap.dedent('''
        import sys
        def main(args):
        %s
        sys.stdout.write(str(main(sys.argv[1:])) + '\\n')
    ''') % textwrap.indent(textwrap.dedent(_BLOCKED_READER), '    ')
    proc = subprocess.Popen([sys.executable, '-c', prog, str(fifo)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, env=ENV)
    try:
        assert proc.stdout.readline().strip() == 'ready'
        time.sleep(0.3)  # the readers are inside open() now
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = proc.stdout.read()
    assert 'interrupted' in out, proc.stderr.read()
    assert took < 1.0, took  # not: waiting for the readers for good
    assert proc.returncode == 0


def test_ctrl_c_ends_encode_within_a_second(tmp_path, small_release):
    photos = tmp_path / 'photos'
    write_noise_images(photos, 300, 48, 64, digits=3)
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    out = out_dir / 'emb.npy'
    proc = subprocess.Popen([sys.executable, '-m', 'vseimageencoder', 'encode', str(photos), '-o', str(out),
                             '--model-path', str(small_release[0]), '--readers', '2', '--batch-size', '1'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=ENV)
    try:
        deadline = time.monotonic() + 120
        while not list(out_dir.iterdir()) and time.monotonic() < deadline:  # the .part appears
            time.sleep(0.05)
        assert list(out_dir.iterdir()), 'encode never started writing'
        time.sleep(0.5)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    assert proc.returncode == 130, err
    assert took < 1.0, took
    assert list(out_dir.iterdir()) == []  # nothing half-written


# ----------------------------------------------------------------------- formats

def test_allowed_formats_decode(tmp_path):
    rgb = np.random.RandomState(1).randint(0, 255, (40, 50, 3), np.uint8)
    for fmt, suffix in (('JPEG', 'jpg'), ('PNG', 'png'), ('WEBP', 'webp'), ('GIF', 'gif'),
                        ('BMP', 'bmp'), ('TIFF', 'tif')):
        path = tmp_path / ('x.' + suffix)
        Image.fromarray(rgb).save(str(path), format=fmt)
        assert read.read_image(path).size == (50, 40), fmt
        assert transform.transform(io.BytesIO(path.read_bytes())).shape == (3, 224, 224), fmt


def test_eps_and_other_formats_are_refused_unopened(tmp_path):
    eps = tmp_path / 'figure.jpg'  # the suffix does not matter, the content does
    eps.write_bytes(b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n')
    with pytest.raises(read.ImageFormatError, match='PostScript/EPS is not an allowed image format'):
        transform.transform(eps)
    with pytest.raises(read.ImageFormatError, match='PostScript/EPS'):
        transform.transform(io.BytesIO(eps.read_bytes()))
    ppm = tmp_path / 'x.ppm'
    Image.new('RGB', (8, 8)).save(str(ppm))
    with pytest.raises(read.ImageFormatError, match='PPM is not an allowed'):
        read.read_image(ppm)
    # Still an ImageReadError: encode names and skips it like any unreadable file.
    assert issubclass(read.ImageFormatError, read.ImageReadError)


# ----------------------------------------------------------------------- decode size

@pytest.fixture(scope='module')
def huge_png(tmp_path_factory):
    return write_png_stream(tmp_path_factory.mktemp('huge') / 'huge.png', 12500, 12500)


_DECODE = '''
    import io
    from vseimageencoder.images import read, transform
    path = args[0]
    outcomes = []
    for how in ('fast', 'exact', 'bytes'):
        try:
            if how == 'bytes':  # the jina 3 Executor's blob / data: / http path
                transform.transform(io.BytesIO(open(path, 'rb').read()), resize='fast')
            elif how == 'exact':
                read.read_image(path)
            else:
                transform.transform(path, resize='fast')
            outcomes.append(how + ' decoded')
        except Exception as e:
            outcomes.append('%s %s: %s' % (how, type(e).__name__, e))
    return ' | '.join(outcomes)
'''


def test_huge_png_is_refused_in_little_memory(huge_png):
    assert huge_png.stat().st_size < 600_000
    # The address space cap turns a regression into a
    # MemoryError in the child instead of a strain on the machine.
    out, rss = run_child(_DECODE, huge_png, limit_mb=1500)
    parts = out.split(' | ')
    assert [p.split()[0] for p in parts] == ['fast', 'exact', 'bytes'], out
    for p in parts:
        assert p.split()[1] == 'ImageTooLargeError:' and '12500 x 12500 pixels' in p, out
    assert rss < 250, rss


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / 'x.png'
    Image.new('RGB', (300, 200)).save(str(path))
    code = '''
        from vseimageencoder.images import read
        return '%d %s' % (read.MAX_IMAGE_PIXELS, read.read_image(args[0]).size)
    '''
    monkeypatch.setenv('VSEIMAGEENCODER_MAX_PIXELS', '50000')
    out, _ = run_child(code, path)
    assert out.startswith('ImageTooLargeError') and 'limit of 50000 pixels' in out, out
    monkeypatch.setattr(read, 'MAX_IMAGE_PIXELS', 60000)
    assert read.read_image(path).size == (300, 200)


def test_fast_jpeg_decode_counts_decoded_pixels(tmp_path, monkeypatch):
    # Under resize='fast' a large JPEG decodes at 1/8: it is the decoded size that counts.
    path = tmp_path / 'big.jpg'
    Image.new('RGB', (4096, 4096), (90, 120, 30)).save(str(path), quality=80)
    monkeypatch.setattr(read, 'MAX_IMAGE_PIXELS', 4096 * 4096 // 4)
    assert transform.transform(path, resize='fast').shape == (3, 224, 224)
    with pytest.raises(read.ImageTooLargeError, match='4096 x 4096 pixels'):
        transform.transform(path, resize='exact')
