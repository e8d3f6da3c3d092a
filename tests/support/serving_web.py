"""A real ``vseimageencoder serve`` over a real index, for the serve API and browser tests,
the screenshot script and the jina 3 run: a random-weight checkpoint with its vocabulary in
the release layout, generated photos, the index built by the ``index`` code, and the
server started as the command line starts it, on 127.0.0.1 at a free port."""
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]

#: The vocabulary size of the test checkpoints (40 caption words and 4 special tokens).
VOCAB_SIZE = 44
#: Captions the tests search with: known words, unknown words, punctuation.
CAPTIONS = ['a man riding a horse on the beach', 'two women playing with a red ball in the snow',
            'a zebra near a lighthouse']

#: Generated photos: (name, width, height, options for tests.support.photos.write_photo).
PHOTO_KINDS = [
    ('beach/small-300x200.jpg', 300, 200, {}),
    ('beach/png-640x480.png', 640, 480, {}),
    ('city/gray-800x600.jpg', 800, 600, {'gray': True}),
    ('city/portrait-600x900.jpg', 600, 900, {'progressive': True}),
    ('city/exif6-1200x800.jpg', 1200, 800, {'orientation': 6}),
    ('snow/exif3-1024x768.jpg', 1024, 768, {'orientation': 3}),
    ('snow/wide-1600x600.jpg', 1600, 600, {}),
    ('snow/cmyk-800x560.jpg', 800, 560, {'cmyk': True}),
]


def write_model(folder) -> Path:
    """A resnet18 VSE++ checkpoint (32-d embeddings, text tower included) and its f30k
    vocabulary, written as the releases were, into ``folder``; returns the checkpoint."""
    from tests.support.py27_pickle import vocab_words, write_py27_release_checkpoint, write_py27_vocab

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rel = write_py27_release_checkpoint(folder / 'model_best.pth.tar', 'resnet18', embed_size=32,
                                        word_dim=8, vocab_size=VOCAB_SIZE, seed=11)
    write_py27_vocab(folder / 'f30k_vocab.pkl', vocab_words(VOCAB_SIZE - 4))
    return rel.path


def write_photos(folder, copies: int = 1) -> List[Path]:
    """The generated photos of :data:`PHOTO_KINDS`, ``copies`` times over (other seeds)."""
    from tests.support.photos import write_photo

    paths = []
    for c in range(copies):
        for i, (name, w, h, opts) in enumerate(PHOTO_KINDS):
            if c:
                name = '%s/copy%d-%s' % (Path(name).parent, c, Path(name).name)
            paths.append(write_photo(Path(folder) / name, w, h, seed=100 * c + i, **opts))
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def cli(python: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m vseimageencoder ARGS`` in the repository, output captured."""
    return subprocess.run([python, '-m', 'vseimageencoder'] + list(args), cwd=str(REPO),
                          capture_output=True, text=True, timeout=timeout)


def get(url: str, timeout: float = 60) -> Tuple[int, dict, bytes]:
    """``(status, headers, body)`` of a GET, 4xx/5xx included."""
    return request('GET', url, timeout=timeout)


def request(method: str, url: str, body: Optional[bytes] = None, headers: Optional[dict] = None,
            timeout: float = 60) -> Tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(url: str, timeout: float = 60) -> Tuple[int, dict]:
    status, _, body = get(url, timeout)
    return status, json.loads(body)


def multipart(field: str, filename: str, data: bytes, ctype: str = 'application/octet-stream'):
    """``(body, headers)`` of a multipart/form-data upload of one file."""
    boundary = 'vse-test-boundary-7MA4YWxkTrZu0gW'
    body = (('--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\n'
             'Content-Type: %s\r\n\r\n' % (boundary, field, filename, ctype)).encode()
            + data + ('\r\n--%s--\r\n' % boundary).encode())
    return body, {'Content-Type': 'multipart/form-data; boundary=' + boundary}


class Server:
    """A running ``vseimageencoder serve`` process; ``url`` is its base URL."""

    def __init__(self, proc: subprocess.Popen, url: str, log: Path):
        self.proc, self.url, self.log = proc, url, log

    def log_text(self) -> str:
        return self.log.read_text(encoding='utf-8', errors='replace')


@contextlib.contextmanager
def serving(index_dir, model_path, python: str = sys.executable, extra=(), start_timeout: float = 240,
            log_dir=None):
    """Start ``vseimageencoder serve INDEX_DIR --model-path M`` on 127.0.0.1 at a free port,
    wait until ``/healthz`` answers, yield a :class:`Server`; stop its process group after."""
    from tests.support.processes import stop_process_group

    port = free_port()
    log = Path(log_dir or Path(index_dir).parent) / ('serve-%d.log' % port)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with open(log, 'w') as out:
        proc = subprocess.Popen([python, '-m', 'vseimageencoder', 'serve', str(index_dir),
                                 '--model-path', str(model_path), '--host', '127.0.0.1',
                                 '--port', str(port), '--no-progress'] + list(extra),
                                cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    server = Server(proc, 'http://127.0.0.1:%d' % port, log)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError('serve exited with %d before answering:\n%s'
                                   % (proc.returncode, server.log_text()))
            try:
                if get(server.url + '/healthz', timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError('serve did not answer within %.0f s:\n%s'
                                   % (start_timeout, server.log_text()))
            time.sleep(0.25)
        yield server
    finally:
        stop_process_group(proc)


# --------------------------------------------------------------------------- the browser

#: Debian's paths; VSE_CHROMIUM / VSE_CHROMEDRIVER name others.
CHROMIUM = os.environ.get('VSE_CHROMIUM', '/usr/bin/chromium')
CHROMEDRIVER = os.environ.get('VSE_CHROMEDRIVER', '/usr/bin/chromedriver')
#: Headless, and nothing that talks to anyone but the page's server: no QUIC, no background
#: or component updates, no sync, no first-run pings; a fresh profile every time.
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--disable-dev-shm-usage', '--disable-default-apps', '--disable-extensions',
                  '--no-default-browser-check', '--metrics-recording-only', '--mute-audio']


def chromium_missing() -> Optional[str]:
    """Why the browser tests cannot run here, or None."""
    import shutil

    for path, package in ((CHROMIUM, 'chromium'), (CHROMEDRIVER, 'chromium-driver')):
        if not (shutil.which(path) or os.path.exists(path)):
            return ('%s not found: install Debian\'s %s package (scripts/setup.sh does, as root)'
                    % (path, package))
    try:
        import selenium  # noqa: F401
    except ImportError:
        return 'selenium is not installed (requirements.txt)'
    return None


def chromium(profile_dir, width: int = 1280, height: int = 900):
    """A selenium driver for Debian's headless Chromium, its profile in ``profile_dir``
    (fresh), the network log on, so a test can list every request the page made."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Selenium Manager would look for (and download) drivers: the paths are given instead.
    os.environ['SE_OFFLINE'] = 'true'
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + ['--user-data-dir=%s' % profile_dir,
                                  '--window-size=%d,%d' % (width, height)]:
        opts.add_argument(flag)
    opts.set_capability('goog:loggingPrefs', {'performance': 'ALL'})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


def requested_urls(driver) -> List[str]:
    """Every URL the browser requested since the last call (from the performance log)."""
    urls = []
    for entry in driver.get_log('performance'):
        message = json.loads(entry['message'])['message']
        if message.get('method') == 'Network.requestWillBeSent':
            urls.append(message['params']['request']['url'])
    return urls
