"""Podman for the container tests: private storage/config, and local base images.

No registry is reachable, so base images are made here with debootstrap from Debian's own
package mirror (a package registry), as the project's notes describe. Everything lives under
/var/tmp/vseimageencoder-ctr so base images and build layers survive between runs on the
same machine.
"""
import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(os.environ.get('VSE_CONTAINER_ROOT', '/var/tmp/vseimageencoder-ctr'))
RUNTIME_BASE = 'localhost/vse-py39:bullseye'
BUILDER_BASE = 'localhost/vse-py39-build:bullseye'
_RUNTIME_PKGS = 'python3.9,python3.9-venv,python3-distutils,ca-certificates'
_BUILD_PKGS = _RUNTIME_PKGS + ',python3.9-dev,gcc,libc6-dev'


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


def image_ids_in_build_log(log):
    """IDs of the images (final and intermediate, cached or new) a podman build printed."""
    ids = set()
    for line in log.splitlines():
        if line.startswith('--> '):
            word = line[4:].replace('Using cache', '').split()
            if word and all(c in '0123456789abcdef' for c in word[0]) and len(word[0]) >= 11:
                ids.add(word[0])
    return ids


def remove_dangling_images_except(keep, env=None):
    """Remove untagged images except those in ``keep`` (IDs full or short, as builds print them).

    Time-based pruning would be wrong here: a fully cached build creates nothing new, and
    pruning by age would then delete the very stages it was cached on.
    """
    env = env or podman_env()
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

    Runs in a fresh process (tests.integration.fresh_process) inside ``docker_api()``.
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
