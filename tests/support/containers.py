"""Podman for the container tests: private storage/config, and local base images.

No registry is reachable, so base images are made here with debootstrap from Debian's own
package mirror (a package registry), as the project's notes describe. Everything lives under
/var/tmp/vseimageencoder-ctr so base images and build layers survive between runs on the
same machine.
"""
import contextlib
import glob
import html
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(os.environ.get('VSE_CONTAINER_ROOT', '/var/tmp/vseimageencoder-ctr'))
RUNTIME_BASE = 'localhost/vse-py39:bullseye'
BUILDER_BASE = 'localhost/vse-py39-build:bullseye'
_RUNTIME_PKGS = 'python3.9,python3.9-venv,python3-distutils,ca-certificates'
_BUILD_PKGS = _RUNTIME_PKGS + ',python3.9-dev,gcc,libc6-dev'
# The jina 3 image's base: Debian 12's Python 3.11 (every jina 3 dependency has wheels for it,
# so no compiler and no separate build stage).
JINA3_BASE = 'localhost/vse-py311:bookworm'
_JINA3_PKGS = 'python3,python3-venv,ca-certificates'


MODEL = 'f30k_vse++_resnet'
VOCAB_SIZE = 44
EMBED = 32


def write_release_archives(folder):
    """runs.tar and vocab.tar as the authors serve them, holding one small resnet18 model
    (embed size EMBED) and its vocabulary, both written as Python 2.7 wrote the releases.

    Returns (runs.tar, vocab.tar, the Py27Release, the vocabulary's words).
    """
    from tests.support.archive_server import write_release_archive
    from tests.support.py27_pickle import vocab_words, write_py27_release_checkpoint, write_py27_vocab
    folder = Path(folder)
    rel = write_py27_release_checkpoint(folder / 'model_best.pth.tar', 'resnet18', embed_size=EMBED,
                                        word_dim=8, num_layers=1, vocab_size=VOCAB_SIZE, seed=31)
    words = vocab_words(VOCAB_SIZE - 4)
    write_py27_vocab(folder / 'f30k_vocab.pkl', words)
    runs = write_release_archive(folder / 'runs.tar', {
        'runs/%s/model_best.pth.tar' % MODEL: rel.path,
        'runs/f30k_vse++_vggfull/model_best.pth.tar': b'\0' * 4096,
    })
    vocab = write_release_archive(folder / 'vocab.tar', {
        'vocab/coco_vocab.pkl': b'\0' * 512,
        'vocab/f30k_vocab.pkl': folder / 'f30k_vocab.pkl',
    })
    return runs, vocab, rel, words


def manifest_version(repo) -> str:
    """The package version, from manifest.yml (its one home)."""
    text = (Path(repo) / 'manifest.yml').read_text(encoding='utf-8')
    return re.search(r'^version:\s*["\']?([0-9][^"\'\s#]*)', text, re.M).group(1)


def missing_tools():
    return [t for t in ('podman', 'debootstrap', 'runc', 'iptables') if shutil.which(t) is None]


def podman_env(subnet_loopback=False) -> dict:
    """Environment pointing podman at this project's storage and settings.

    ``subnet_loopback``: podman's default network gets 127.0.0.0/8, so that jina, which asks
    the Docker API for the 'bridge' gateway, dials 127.0.0.1 and never an address off this
    machine (the stock 10.88.0.1 would be).
    """
    ROOT.mkdir(parents=True, exist_ok=True)
    storage = ROOT / 'storage.conf'
    storage.write_text('[storage]\ndriver = "overlay"\nrunroot = "%s"\ngraphroot = "%s"\n'
                       % (ROOT / 'run', ROOT / 'storage'))
    conf = ROOT / ('containers-loopback.conf' if subnet_loopback else 'containers.conf')
    text = ('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
            '[engine]\nruntime = "runc"\n')
    if subnet_loopback:
        text += '[network]\ndefault_subnet = "127.0.0.0/8"\n'
    conf.write_text(text)
    env = dict(os.environ, CONTAINERS_STORAGE_CONF=str(storage), CONTAINERS_CONF=str(conf))
    return env


def podman(*args, env=None, check=True, timeout=1800, **kw):
    return subprocess.run(['podman', *map(str, args)], env=env or podman_env(), check=check,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=timeout, **kw)


def image_exists(name, env=None) -> bool:
    return podman('image', 'exists', name, env=env, check=False).returncode == 0


def host_ca_certs():
    """Extra CA certificates this machine trusts (TLS may be intercepted by its own CA)."""
    return sorted(glob.glob('/usr/local/share/ca-certificates/*.crt'))


def ensure_base_image(name, packages, env=None, suite='bullseye'):
    """A Debian ``suite`` image with ``packages`` (Python 3.9 for bullseye), made once."""
    if image_exists(name, env):
        return
    mirror = 'http://deb.debian.org/debian'
    with tempfile.TemporaryDirectory(dir=str(ROOT)) as tmp:
        rootfs = Path(tmp) / 'rootfs'
        subprocess.run(['debootstrap', '--variant=minbase', '--include=' + packages, suite,
                        str(rootfs), mirror], check=True, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=1200)
        certs = host_ca_certs()
        if certs:
            dest = rootfs / 'usr/local/share/ca-certificates'
            dest.mkdir(parents=True, exist_ok=True)
            for c in certs:
                shutil.copy(c, str(dest))
            subprocess.run(['chroot', str(rootfs), 'update-ca-certificates'], check=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        shutil.rmtree(str(rootfs / 'var/cache/apt/archives'), ignore_errors=True)
        tar = subprocess.Popen(['tar', '-C', str(rootfs), '-c', '.'], stdout=subprocess.PIPE)
        subprocess.run(['podman', 'import', '-', name], stdin=tar.stdout, env=env or podman_env(),
                       check=True, stdout=subprocess.PIPE, timeout=600)
        tar.wait()


def ensure_base_images(env=None):
    ensure_base_image(RUNTIME_BASE, _RUNTIME_PKGS, env)
    ensure_base_image(BUILDER_BASE, _BUILD_PKGS, env)


def ensure_jina3_base_image(env=None):
    ensure_base_image(JINA3_BASE, _JINA3_PKGS, env, suite='bookworm')


def local_wheel_dirs():
    """Folders of wheels that pip on this machine is configured to use (its find-links and
    file:// indexes, as ``pip config list`` reports them); [] where there are none."""
    r = subprocess.run([sys.executable, '-m', 'pip', 'config', 'list'], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, universal_newlines=True)
    dirs = []
    for key, value in re.findall(r"^(\S+?)='(.*)'$", r.stdout, re.M):
        if not key.endswith(('find-links', 'index-url')):
            continue
        for item in value.split():
            path = item[len('file://'):] if item.startswith('file://') else item
            if not path.startswith('/'):
                continue  # a remote index: the build reaches the registry itself
            # a file:// simple index keeps its files beside it (../files): take its parent
            folder = Path(path).parent if Path(path).name == 'simple' else Path(path)
            if folder.is_dir() and folder not in dirs:
                dirs.append(folder)
    return dirs


class WheelMirror:
    """This machine's local wheels served as a pip find-links page on 127.0.0.1.

    A build step inside a container cannot see the host's wheel folders; with this page as
    ``PIP_FIND_LINKS`` pip takes a release from here instead of downloading it again from
    the registry (find-links candidates come first among equal ones), and the registry
    still serves everything that is not here. The port is fixed when free, so the build
    argument, and with it the build's layer cache, stays the same from run to run.
    """

    PORT = 38711

    def __init__(self, folders):
        self.files = {}
        for folder in folders:
            for path in sorted(Path(folder).rglob('*.whl')):
                self.files.setdefault(path.name, path)
        page = ''.join('<a href="/w/%s">%s</a><br>\n' % (html.escape(n), html.escape(n))
                       for n in sorted(self.files)).encode()
        files = self.files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path in ('/', ''):
                    body = b'<!DOCTYPE html><html><body>\n' + page + b'</body></html>\n'
                    self.send_response(200)
                    self.send_header('Content-Type', 'text/html')
                    self.send_header('Content-Length', str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                path = files.get(self.path[len('/w/'):]) if self.path.startswith('/w/') else None
                if path is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header('Content-Type', 'application/octet-stream')
                self.send_header('Content-Length', str(path.stat().st_size))
                self.end_headers()
                with path.open('rb') as f:
                    shutil.copyfileobj(f, self.wfile, 1 << 20)

            def log_message(self, *args):
                pass

        try:
            self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', self.PORT), Handler)
        except OSError:  # taken: any port works, the layer cache is just not reused this time
            self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d/' % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def build_lock():
    """Held while an image test builds and prunes: two test runs on one machine (the jina
    0.9.33 suite and the jina 3 suite, or two people's) share this storage, and one run's
    pruning of untagged images would otherwise delete the layers another run's build is
    committing."""
    import fcntl
    ROOT.mkdir(parents=True, exist_ok=True)
    with open(str(ROOT / 'build.lock'), 'w') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def image_ids_in_build_log(log):
    """IDs of the images (final and intermediate, cached or new) a podman build printed."""
    ids = set()
    for line in log.splitlines():
        if line.startswith('--> '):
            word = line[4:].replace('Using cache', '').split()
            if word and all(c in '0123456789abcdef' for c in word[0]) and len(word[0]) >= 11:
                ids.add(word[0])
    return ids


def remove_dangling_images_except(keep, env=None, build=None):
    """Remove untagged images except those in ``keep`` (IDs full or short, as builds print them).

    Time-based pruning would be wrong here: a fully cached build creates nothing new, and
    pruning by age would then delete the very stages it was cached on. ``build`` names the
    build ``keep`` comes from (one per Dockerfile): its IDs are recorded, and the recorded
    IDs of the other builds are kept too, so that the jina 0.9.33 image's test and the jina 3
    image's test do not delete each other's build cache.
    """
    env = env or podman_env()
    keep = set(keep)
    if build:
        ROOT.mkdir(parents=True, exist_ok=True)
        (ROOT / ('build-ids-%s.txt' % build)).write_text('\n'.join(sorted(keep)) + '\n')
    for record in ROOT.glob('build-ids-*.txt'):
        keep.update(record.read_text().split())
    listed = podman('images', '-a', '--filter', 'dangling=true', '--no-trunc', '--format', '{{.ID}}',
                    env=env, check=False).stdout.split()
    for image_id in listed:
        image_id = image_id.replace('sha256:', '')
        if not any(image_id.startswith(k) or k.startswith(image_id) for k in keep):
            podman('rmi', '-f', image_id, env=env, check=False)


def remove_containers_of(tag, env=None):
    """Whatever a failed run left running from the image (jina stops its own on success)."""
    env = env or podman_env()
    # podman's ancestor filter does not match a short name such as 'jinahub/x:tag' against
    # the stored 'localhost/jinahub/x:tag', so match the names here.
    listed = podman('ps', '-a', '--format', '{{.ID}} {{.Image}}', env=env, check=False).stdout
    ids = [line.split()[0] for line in listed.splitlines()
           if len(line.split()) == 2 and line.split()[1] in (tag, 'localhost/' + tag)]
    if ids:
        podman('rm', '-f', '-t', '0', *ids, env=env, check=False)


def docker_py_path() -> Path:
    """The `docker` client package, installed beside (not into) the venv: with it importable,
    jina's hub dry-run would try to reach a Docker daemon."""
    target = ROOT / 'docker-py'
    if not (target / 'docker').is_dir():
        subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--target', str(target),
                        'docker==7.1.0'], check=True)
    return target


@contextlib.contextmanager
def docker_api():
    """podman's Docker-compatible API on a private socket, DOCKER_HOST set while inside.

    The service runs with the loopback default subnet (see podman_env), so jina's ContainerRuntime
    finds 127.0.0.1 as the 'bridge' gateway.
    """
    env = podman_env(subnet_loopback=True)
    sock = ROOT / ('podman-%d.sock' % os.getpid())
    service = subprocess.Popen(['podman', 'system', 'service', '--time=0', 'unix://%s' % sock],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    old = os.environ.get('DOCKER_HOST')
    try:
        deadline = time.time() + 30
        while not sock.exists() and time.time() < deadline:
            time.sleep(0.1)
        if not sock.exists():
            raise RuntimeError('podman API socket %s did not appear within 30 s' % sock)
        os.environ['DOCKER_HOST'] = 'unix://%s' % sock
        yield
    finally:
        if old is None:
            os.environ.pop('DOCKER_HOST', None)
        else:
            os.environ['DOCKER_HOST'] = old
        service.terminate()
        service.wait(30)
        if sock.exists():
            sock.unlink()


# jina's CLI asks api.jina.ai for its latest version at start; in containers the tests start,
# that request goes to a closed port on loopback instead, so nothing leaves this machine.
NO_EGRESS = {'https_proxy': 'http://127.0.0.1:9', 'HTTPS_PROXY': 'http://127.0.0.1:9',
             'http_proxy': 'http://127.0.0.1:9', 'HTTP_PROXY': 'http://127.0.0.1:9',
             'no_proxy': '127.0.0.1,localhost'}


def flow_with_docker_uses(tag, images, timeout_ctrl):
    """Index ``images`` (N, 3, H, W) through ``Flow().add(uses='docker://' + tag)``.

    Runs in a fresh process (tests.support.fresh_process) inside ``docker_api()``.
    Returns ({doc id: embedding}, seconds until the Flow was ready).
    """
    sys.path.insert(0, str(docker_py_path()))
    from jina import Document
    from jina.flow import Flow

    got = {}

    def on_done(resp):
        for d in resp.docs:
            got[d.id] = d.embedding.copy()

    docs = [Document(id='%016x' % (i + 1), blob=img) for i, img in enumerate(images)]
    start = time.perf_counter()
    with Flow().add(uses='docker://' + tag, timeout_ready=180000, timeout_ctrl=timeout_ctrl,
                    docker_kwargs={'environment': NO_EGRESS}) as f:
        ready_s = time.perf_counter() - start
        f.index(docs, on_done=on_done, request_size=2)
    return got, ready_s
