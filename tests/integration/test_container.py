"""The pod image, really built (podman here) and really run, as users run it.

Built FROM Debian bullseye base images made locally with debootstrap; Python packages come
from the package registry; the weights archive is served from 127.0.0.1 and fetched at
build time by the image's own download step. Needs podman, debootstrap, runc and iptables
(.ci/run installs them); without them these tests skip and say why.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests import containers as ctr
from tests.archive_server import ArchiveServer, write_release_archive
from tests.integration.fresh_process import run_in_fresh_process
from tests.integration.test_pod_cli import _free_ports, _send_through_gateway
from tests.vsepp_release import reference_embed, write_release_checkpoint

REPO = Path(__file__).resolve().parent.parent.parent
TAG = 'jinahub/pod.encoder.vseimageencoder:0.0.6-0.9.33'
MODEL = 'f30k_vse++_resnet'
# Longer than the container takes to import torch and load the model (about 10 s here).
DOCKER_TIMEOUT_CTRL_MS = 60000

pytestmark = pytest.mark.skipif(bool(ctr.missing_tools()) or os.geteuid() != 0,
                                reason='container tests need root and %s (installed by .ci/run)'
                                       % ', '.join(ctr.missing_tools() or ['root']))


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp('weights')
    ckpt = folder / 'model_best.pth.tar'
    backbone, fc = write_release_checkpoint(ckpt, 'resnet18', embed_size=1024, seed=31)
    archive = write_release_archive(folder / 'runs.tar', {
        'runs/%s/model_best.pth.tar' % MODEL: ckpt,
        'runs/f30k_vse++_vggfull/model_best.pth.tar': b'\0' * 4096,
    })
    return archive, backbone, fc


@pytest.fixture(scope='module')
def image(weights):
    """Builds the image with the repository's one build command; returns (tag, size)."""
    env = ctr.podman_env()
    ctr.ensure_base_images(env)
    archive = weights[0]
    args = ['--network', 'host',
            '--build-arg', 'BUILDER_BASE=' + ctr.BUILDER_BASE,
            '--build-arg', 'BASE=' + ctr.RUNTIME_BASE,
            '--build-arg', 'PYTHON=python3.9',
            # CPU-only wheels live on download.pytorch.org, which this machine cannot reach:
            # the registry's (CUDA) build stands in; the Dockerfile is otherwise the same.
            '--build-arg', 'TORCH_INDEX_URL=https://pypi.org/simple',
            '--build-arg', 'MODEL=' + MODEL]
    if ctr.host_ca_certs():
        args += ['--build-arg', 'PIP_CERT=/etc/ssl/certs/ca-certificates.crt']
    with ArchiveServer(archive) as server:
        args += ['--build-arg', 'WEIGHTS_SOURCE=' + server.url]
        r = subprocess.run(['scripts/build-image.sh'] + args, cwd=str(REPO),
                           env=dict(env, BUILDER='podman'), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=3000)
    assert r.returncode == 0, r.stdout[-6000:]
    assert r.stdout.strip().splitlines()[-1] == TAG
    # A previous image of this tag and the build stages of earlier builds are dangling once
    # the sources change, several GB each: drop them. This build's own stages, cached or
    # new, stay as the next build's cache.
    ctr.remove_dangling_images_except(ctr.image_ids_in_build_log(r.stdout), env=env)
    size = ctr.podman('image', 'inspect', '--format', '{{.Size}}', TAG, env=env).stdout.strip()
    sys.stderr.write('\nbuilt %s: %.2f GB\n' % (TAG, int(size) / 1e9))
    return TAG, int(size)


def _images():
    return np.random.RandomState(77).randn(4, 3, 64, 64).astype(np.float32)


def _wait_for_log(name, text, env, timeout=180):
    deadline = time.time() + timeout
    logs = ''
    while time.time() < deadline:
        logs = ctr.podman('logs', name, env=env, check=False).stdout
        if text in logs:
            return logs
        state = ctr.podman('inspect', '--format', '{{.State.Running}}', name, env=env, check=False).stdout
        if 'false' in state:
            break
        time.sleep(0.5)
    raise AssertionError('container %s never logged %r:\n%s' % (name, text, logs[-4000:]))


def test_image_contents(image):
    tag, size = image
    env = ctr.podman_env()
    r = ctr.podman('run', '--rm', '--network', 'none', '--entrypoint', 'sh', tag, '-c',
                   'ls /workspace /workspace/pretrained; command -v gcc cc || echo no-compiler; '
                   'ls /root/.cache 2>/dev/null || echo no-cache; ls /opt/venv/lib/python3.9/site-packages '
                   '| grep -c -E "^(pytest|_pytest)" || true; '
                   'python -c "import json; print(json.load(open(\'/workspace/pretrained/model_best.pth.tar.json\'))[\'model\'])"',
                   env=env)
    out = r.stdout
    assert 'config.yml' in out and 'model_best.pth.tar' in out
    assert 'no-compiler' in out and 'no-cache' in out
    assert MODEL in out
    assert not any(l.strip().endswith('.tar') and 'runs' in l for l in out.splitlines())  # no archive kept


def test_docker_run_style_with_gateway(image, weights):
    tag, _ = image
    _, backbone, fc = weights
    env = ctr.podman_env()
    port_in, port_out, port_ctrl, port_expose = _free_ports(4)
    name = 'vse-test-%d' % port_in
    envs = sum((['-e', '%s=%s' % kv] for kv in ctr.NO_EGRESS.items()), [])
    ctr.podman('run', '-d', '--rm', '--init', '--network', 'host', '--name', name, *envs, tag,
               '--port-in', port_in, '--port-out', port_out, '--port-ctrl', port_ctrl, env=env)
    try:
        _wait_for_log(name, 'ready and listening', env)
        got = run_in_fresh_process(_send_through_gateway, port_in, port_out, port_expose, _images(),
                                   timeout=180)
    finally:
        ctr.podman('rm', '-f', '-t', '0', name, env=env, check=False)
    expected = reference_embed(backbone, fc, _images())
    assert sorted(got) == ['%016x' % (i + 1) for i in range(4)]
    for i in range(4):
        np.testing.assert_allclose(got['%016x' % (i + 1)], expected[i], atol=2e-5)


def test_flow_uses_docker_through_podman_socket(image, weights):
    tag, _ = image
    _, backbone, fc = weights
    ctr.docker_py_path()  # installed here, not in the child, so a failure reads plainly
    ctr.remove_containers_of(tag)  # jina names its container after the pod: leftovers clash
    try:
        with ctr.docker_api():
            # timeout_ctrl longer than the container's start-up: see the README's docker://
            # note and benchmarks/docker_readiness.py, which measures the hang it avoids.
            got, _ = run_in_fresh_process(ctr.flow_with_docker_uses, tag, _images(),
                                             DOCKER_TIMEOUT_CTRL_MS, timeout=240)
    finally:
        ctr.remove_containers_of(tag)
    expected = reference_embed(backbone, fc, _images())
    assert sorted(got) == ['%016x' % (i + 1) for i in range(4)]
    for i in range(4):
        np.testing.assert_allclose(got['%016x' % (i + 1)], expected[i], atol=2e-5)
