"""The pod image, really built (podman here) and really run, as users run it.

Built FROM Debian bullseye base images made locally with debootstrap; Python packages come
from the package registry; the weights and vocabulary archives are served from 127.0.0.1 and
fetched at build time by the image's own download step. The checkpoint and vocabulary are
written as the releases were (Python 2.7 pickles, legacy torch format); expected embeddings
come from the independent references in tests/support/vsepp_release.py. Needs podman, debootstrap,
runc and iptables (.ci/run installs them); without them these tests skip and say why.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.jina09.test_pod_cli import _free_ports, _send_through_gateway
from tests.support import containers as ctr
from tests.support.archive_server import ArchiveServer
from tests.support.fresh_process import run_in_fresh_process
from tests.support.vsepp_release import reference_embed, reference_text_embeds

REPO = Path(__file__).resolve().parent.parent.parent
TAG = 'jinahub/pod.encoder.vseimageencoder:0.0.6-0.9.33'
MODEL = ctr.MODEL
# Longer than the container takes to import torch and load the model (about 10 s here).
DOCKER_TIMEOUT_CTRL_MS = 60000
CAPTIONS = ['a man riding a horse on the beach', 'two women playing with a ball',
            'caf\u00e9 cr\u00e8me in the snow', 'an unknown zebra']

pytestmark = [pytest.mark.jina09, pytest.mark.skipif(bool(ctr.missing_tools()) or os.geteuid() != 0,
                                 reason='container tests need root and %s (installed by .ci/run)'
                                        % ', '.join(ctr.missing_tools() or ['root']))]


@pytest.fixture(scope='module')
def release(tmp_path_factory):
    """runs.tar and vocab.tar as the authors serve them, holding one small resnet18 model."""
    return ctr.write_release_archives(tmp_path_factory.mktemp('release'))


def _expected_images(release, images):
    rel = release[2]
    return reference_embed(rel.backbone, rel.fc, images)


def _expected_text(release, captions):
    return reference_text_embeds(release[2].text_sd, release[3], captions)


@pytest.fixture(scope='module')
def image(release):
    """Builds the image with the repository's one build command; returns (tag, size)."""
    with ctr.build_lock():
        return _build_image(release)


def _build_image(release):
    env = ctr.podman_env()
    ctr.ensure_base_images(env)
    runs, vocab = release[0], release[1]
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
    with ArchiveServer({'/runs.tar': runs, '/vocab.tar': vocab}) as server:
        args += ['--build-arg', 'WEIGHTS_SOURCE=' + server.url_for('/runs.tar'),
                 '--build-arg', 'VOCAB_SOURCE=' + server.url_for('/vocab.tar')]
        r = subprocess.run(['scripts/build-image.sh'] + args, cwd=str(REPO),
                           env=dict(env, BUILDER='podman'), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=3000)
    assert r.returncode == 0, r.stdout[-6000:]
    assert r.stdout.strip().splitlines()[-1] == TAG
    # A previous image of this tag and the build stages of earlier builds are dangling once
    # the sources change, several GB each: drop them. This build's own stages, cached or
    # new, stay as the next build's cache.
    ctr.remove_dangling_images_except(ctr.image_ids_in_build_log(r.stdout), env=env, build='jina09')
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
    assert 'config.yml' in out and 'text.yml' in out and 'model_best.pth.tar' in out
    assert 'f30k_vocab.pkl' in out  # the vocabulary baked in beside the checkpoint
    assert 'no-compiler' in out and 'no-cache' in out
    assert MODEL in out
    assert not any(l.strip().endswith('.tar') and ('runs' in l or 'vocab' in l)
                   for l in out.splitlines())  # no archive kept


def _run_pod(tag, payload, kind, *pod_args):
    """``docker run IMAGE *pod_args --port-in P --port-out Q`` (host network), then send
    ``payload`` (``kind`` 'blob' images or 'text' captions) through a gateway on the host;
    returns the embeddings that came back."""
    env = ctr.podman_env()
    port_in, port_out, port_ctrl, port_expose = _free_ports(4)
    name = 'vse-test-%d' % port_in
    envs = sum((['-e', '%s=%s' % kv] for kv in ctr.NO_EGRESS.items()), [])
    ctr.podman('run', '-d', '--rm', '--init', '--network', 'host', '--name', name, *envs, tag,
               *pod_args, '--port-in', port_in, '--port-out', port_out, '--port-ctrl', port_ctrl,
               env=env)
    try:
        _wait_for_log(name, 'ready and listening', env)
        return run_in_fresh_process(_send_through_gateway, port_in, port_out, port_expose, payload,
                                    kind, 3 if kind == 'text' else 2, timeout=180)
    finally:
        ctr.podman('rm', '-f', '-t', '0', name, env=env, check=False)


def test_docker_run_style_with_gateway(image, release):
    got = _run_pod(image[0], _images(), 'blob')
    expected = _expected_images(release, _images())
    assert sorted(got) == ['%016x' % (i + 1) for i in range(4)]
    for i in range(4):
        np.testing.assert_allclose(got['%016x' % (i + 1)], expected[i], atol=2e-5)


def test_docker_run_text_yml_serves_captions(image, release):
    """The same image serves the text tower: ``docker run IMAGE --uses text.yml ...``."""
    got = _run_pod(image[0], CAPTIONS, 'text', '--uses', 'text.yml')
    expected = _expected_text(release, CAPTIONS)
    assert sorted(got) == sorted(CAPTIONS)
    for c, e in zip(CAPTIONS, expected):
        assert got[c].shape == (ctr.EMBED,) and got[c].dtype == np.float32
        np.testing.assert_allclose(got[c], e, atol=2e-6)


def test_flow_uses_docker_through_podman_socket(image, release):
    tag, _ = image
    ctr.docker_py_path()  # installed here, not in the child, so a failure reads plainly
    ctr.remove_containers_of(tag)  # jina names its container after the pod: leftovers clash
    try:
        with ctr.docker_api():
            # timeout_ctrl longer than the container's start-up: see the README's docker://
            # note and docs/containers.md, whose table (measured by a retired script) shows the hang it avoids.
            got, _ = run_in_fresh_process(ctr.flow_with_docker_uses, tag, _images(),
                                          DOCKER_TIMEOUT_CTRL_MS, timeout=240)
    finally:
        ctr.remove_containers_of(tag)
    expected = _expected_images(release, _images())
    assert sorted(got) == ['%016x' % (i + 1) for i in range(4)]
    for i in range(4):
        np.testing.assert_allclose(got['%016x' % (i + 1)], expected[i], atol=2e-5)
