"""Podman for the container tests: private storage/config, and local base images.

No registry is reachable, so base images are made here with debootstrap from Debian's own
package mirror (a package registry), as the project's notes describe. Everything lives under
/var/tmp/vseimageencoder-ctr so base images and build layers survive between runs on the
same machine.
"""
import glob
import os
import shutil
import subprocess
import tempfile
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
