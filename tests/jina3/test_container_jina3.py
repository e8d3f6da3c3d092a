"""The jina 3 pod image (Dockerfile.jina3), built with `scripts/build-image.sh --jina3` and
run as jina 3 runs images: `Deployment(uses='docker://TAG')` through podman's Docker API
socket (the image tower by the image's entrypoint, the text tower with
`entrypoint='jina executor --uses text.yml'`), and `docker run TAG --uses text.yml --port P`
reached by a jina 3 Client.

Runs in .venv-jina3 (jina 3.34). The base image is Debian 12's Python 3.11 made with
debootstrap; the weights and vocabulary archives are served from 127.0.0.1 and fetched by
the image's own download step; wheels this machine holds locally are offered to the build
from 127.0.0.1 (tests.support.containers.WheelMirror), the rest comes from the package registry.
Expected embeddings come from the independent references (tests/support/vsepp_release.py) on
checkpoints and vocabularies written as the releases were.

The Deployment and the client run in a child process (this file run as a script): the test
process does torch work for the references, and jina forks (see the notes' fork hazard).
That child and the containers run with tests/support/netguard, which logs and refuses any
name lookup or connection beyond 127.0.0.1; the test fails if anything was logged.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

from tests.support import containers as ctr  # noqa: E402
from tests.support.vsepp_release import reference_text_embeds  # noqa: E402

NETGUARD = REPO / 'tests' / 'support' / 'netguard'
CAPTIONS = ['a man riding a horse on the beach', 'two women playing with a ball',
            'caf\u00e9 cr\u00e8me in the snow', 'an unknown zebra', '']


def _jina3_missing():
    try:
        import jina
    except ImportError:
        return 'jina 3 is not installed (run these tests with .venv-jina3/bin/python)'
    if not str(jina.__version__).startswith('3.'):
        return 'jina %s here; these tests need jina 3 (.venv-jina3)' % jina.__version__
    return None


def _skip_reason():
    if ctr.missing_tools() or os.geteuid() != 0:
        return 'container tests need root and %s (installed by .ci/run)' % ', '.join(
            ctr.missing_tools() or ['root'])
    return _jina3_missing()


def _images():
    # already transformed float (3, H, W) images; uint8 pixels are the core's own tests' job
    return np.random.RandomState(78).randn(3, 3, 64, 64).astype(np.float32)


def _tag():
    return subprocess.run([str(REPO / 'scripts/build-image.sh'), '--jina3', '--print-tag'],
                          check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _child_env(home, guard_log, docker_host=None):
    env = dict(os.environ, HOME=str(home), JINA_OPTOUT_TELEMETRY='1', JINA_HIDE_SURVEY='1',
               PYTHONPATH=os.pathsep.join([str(NETGUARD), str(REPO)]), VSE_NETGUARD='1',
               VSE_NETGUARD_LOG=str(guard_log))
    if docker_host:
        env['DOCKER_HOST'] = docker_host
    return env


def _container_guard(guard_dir):
    """Environment and mounts that put the netguard inside a container (log in guard_dir)."""
    env = dict(ctr.NO_EGRESS, PYTHONPATH='/netguard', VSE_NETGUARD='1',
               VSE_NETGUARD_LOG='/netguard-log/refused.log')
    volumes = ['%s:/netguard' % NETGUARD, '%s:/netguard-log' % guard_dir]
    return env, volumes


def _refusals(*logs):
    return ''.join(Path(p).read_text() for p in logs if Path(p).exists())


pytestmark = [pytest.mark.jina3, pytest.mark.skipif(bool(_skip_reason()), reason=_skip_reason() or '')]


@pytest.fixture(scope='module')
def release(tmp_path_factory):
    return ctr.write_release_archives(tmp_path_factory.mktemp('release'))


@pytest.fixture(scope='module')
def image(release):
    """Builds the image with the repository's one build command; returns (tag, size)."""
    with ctr.build_lock():
        return _build_image(release)


def _build_image(release):
    from tests.support.archive_server import ArchiveServer
    env = ctr.podman_env()
    ctr.ensure_jina3_base_image(env)
    tag = _tag()
    args = ['--jina3', '--network', 'host',
            '--build-arg', 'BASE=' + ctr.JINA3_BASE,
            '--build-arg', 'PYTHON=python3',
            # PyTorch's CPU-only index cannot be reached here: the registry's (CUDA) build
            # stands in, the release requirements-jina3.txt pins; the Dockerfile is the same.
            '--build-arg', 'TORCH_INDEX_URL=https://pypi.org/simple',
            '--build-arg', 'MODEL=' + ctr.MODEL]
    if ctr.host_ca_certs():
        args += ['--build-arg', 'PIP_CERT=/etc/ssl/certs/ca-certificates.crt']
    start = time.perf_counter()
    with ArchiveServer({'/runs.tar': release[0], '/vocab.tar': release[1]}) as server, \
            ctr.WheelMirror(ctr.local_wheel_dirs()) as mirror:
        if mirror.files:
            args += ['--build-arg', 'PIP_FIND_LINKS=' + mirror.url]
        args += ['--build-arg', 'WEIGHTS_SOURCE=' + server.url_for('/runs.tar'),
                 '--build-arg', 'VOCAB_SOURCE=' + server.url_for('/vocab.tar')]
        r = subprocess.run(['scripts/build-image.sh'] + args, cwd=str(REPO),
                           env=dict(env, BUILDER='podman'), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=3000)
    assert r.returncode == 0, r.stdout[-6000:]
    assert r.stdout.strip().splitlines()[-1] == tag
    # As in the 0.9 image's test: earlier builds' stages are dangling once sources change.
    ctr.remove_dangling_images_except(ctr.image_ids_in_build_log(r.stdout), env=env, build='jina3')
    size = int(ctr.podman('image', 'inspect', '--format', '{{.Size}}', tag, env=env).stdout.strip())
    sys.stderr.write('\nbuilt %s in %.0f s: %.2f GB\n' % (tag, time.perf_counter() - start, size / 1e9))
    return tag, size


def test_tag_names_the_jina_version():
    import jina
    version = ctr.manifest_version(REPO)
    assert _tag() == 'jinahub/pod.encoder.vseimageencoder:%s-%s' % (version, jina.__version__)


def test_image_contents(image):
    tag, _ = image
    r = ctr.podman('run', '--rm', '--network', 'none', '--entrypoint', 'sh', tag, '-c',
                   'ls /workspace /workspace/pretrained; command -v gcc cc || echo no-compiler; '
                   'ls /root/.cache 2>/dev/null || echo no-cache; '
                   'ls /opt/venv/lib/python3*/site-packages | grep -c -E "^(pytest|_pytest)" || true; '
                   'python -c "import sys, jina, docarray, torch; print(sys.version_info[:2], jina.__version__, '
                   'docarray.__version__, torch.__version__)"; '
                   'python -c "import json; print(json.load(open(\'/workspace/pretrained/model_best.pth.tar.json\'))[\'model\'])"; '
                   'grep -h "^jtype" /workspace/config.yml /workspace/text.yml; '
                   'find / -xdev \\( -name runs.tar -o -name vocab.tar \\) -printf "archive kept: %p\\n"',
                   env=ctr.podman_env())
    out = r.stdout
    assert r.returncode == 0, out
    for name in ('config.yml', 'text.yml', 'model_best.pth.tar', 'f30k_vocab.pkl'):
        assert name in out, out
    assert 'no-compiler' in out and 'no-cache' in out, out
    assert '(3, 11) 3.34.0' in out, out
    assert ctr.MODEL in out, out
    assert 'jtype: VSEImageEncoder' in out and 'jtype: VSETextEncoder' in out, out
    assert 'archive kept' not in out, out


def test_deployment_docker_and_docker_run_text(image, release, tmp_path):
    """At the same time: the image tower through Deployment(uses='docker://TAG'), the text
    tower through Deployment(uses='docker://TAG', entrypoint='jina executor --uses text.yml')
    and as `docker run TAG --uses text.yml --port P`; all answered over gRPC."""
    from tests.support.vsepp_release import reference_embed
    tag, _ = image
    env = ctr.podman_env()
    guard_dir = tmp_path / 'guard'
    guard_dir.mkdir()
    inside_env, volumes = _container_guard(guard_dir)
    text_port = _free_port()
    name = 'vse-j3-text-%d' % text_port
    envs = sum((['-e', '%s=%s' % kv] for kv in inside_env.items()), [])
    mounts = sum((['-v', v] for v in volumes), [])
    np.save(str(tmp_path / 'images.npy'), _images())
    call = dict(tag=tag, text_port=text_port, captions=CAPTIONS, images=str(tmp_path / 'images.npy'),
                out=str(tmp_path / 'out.npz'), container_env=inside_env, volumes=volumes)
    (tmp_path / 'call.json').write_text(json.dumps(call))
    ctr.remove_containers_of(tag, env=env)
    ctr.podman('run', '-d', '--rm', '--init', '--network', 'host', '--name', name, *envs, *mounts,
               tag, '--uses', 'text.yml', '--port', text_port, '--host', '127.0.0.1', env=env)
    try:
        with ctr.docker_api():
            child_env = _child_env(tmp_path / 'home', guard_dir / 'host.log', os.environ['DOCKER_HOST'])
            with (tmp_path / 'child.log').open('w') as log:
                try:
                    rc = subprocess.run([sys.executable, __file__, str(tmp_path / 'call.json')],
                                        cwd=str(tmp_path), env=child_env, stdout=log,
                                        stderr=subprocess.STDOUT, timeout=300).returncode
                except subprocess.TimeoutExpired:
                    rc = 'timed out after 300 s'
    finally:
        logs = ctr.podman('logs', name, env=env, check=False).stdout
        ctr.podman('rm', '-f', '-t', '0', name, env=env, check=False)
        ctr.remove_containers_of(tag, env=env)  # what the Deployment left if it was killed
    out = (tmp_path / 'child.log').read_text()
    assert rc == 0, '%s\n%s\n--- text container:\n%s' % (rc, out[-6000:], logs[-3000:])
    timings = json.loads(out.strip().splitlines()[-1])
    sys.stderr.write('\njina 3 image: %s\n' % timings)
    assert _refusals(guard_dir / 'host.log', guard_dir / 'refused.log') == ''

    got = np.load(str(tmp_path / 'out.npz'))
    rel = release[2]
    expected = reference_embed(rel.backbone, rel.fc, _images())
    assert got['images'].shape == (3, ctr.EMBED) and got['images'].dtype == np.float32
    np.testing.assert_allclose(got['images'], expected, atol=2e-5)
    expected = reference_text_embeds(rel.text_sd, release[3], CAPTIONS)
    for key in ('texts', 'deployment_texts'):  # docker run --uses text.yml; entrypoint=...
        assert got[key].shape == (len(CAPTIONS), ctr.EMBED) and got[key].dtype == np.float32
        np.testing.assert_allclose(got[key], expected, atol=2e-6)


# --------------------------------------------------------------------------- the child

def _offline_jina3():
    """No public-IP lookups, telemetry or registry queries (vseimageencoder.jina3.local).

    And where the calling process itself runs in a Docker container (this test machine
    does: /.dockerenv), jina 3 takes a docker:// executor for docker-in-docker and has the
    gateway dial ``host.docker.internal``: a DNS query for a name that exists only inside
    Docker's own networks. Here podman starts the executor beside this process on the same
    host network, at 127.0.0.1, so jina is told it does not run in a container.
    """
    from vseimageencoder.jina3.local import keep_jina_local
    keep_jina_local()
    import jina.orchestrate.deployments  # noqa: F401 (imports what holds in_docker)
    import jina.serve.networking.utils as net_utils
    real_in_docker = net_utils.in_docker
    for module in list(sys.modules.values()):
        if getattr(module, '__name__', '').startswith('jina') \
                and getattr(module, 'in_docker', None) is real_in_docker:
            module.in_docker = lambda: False


def _wait_ready(port, timeout):
    """gRPC health check of a bare `jina executor` until it serves (or the time is up)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    deadline = time.time() + timeout
    while time.time() < deadline:
        with grpc.insecure_channel('127.0.0.1:%d' % port) as ch:
            try:
                resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=''),
                                                             timeout=2)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
        time.sleep(0.5)
    raise TimeoutError('the text container did not serve on port %d within %d s' % (port, timeout))


def _in_sent_order(sent, got, check_text=False):
    """The embeddings of ``got`` stacked in the order of ``sent``, matched by document id;
    each sent document must come back once (and, for texts, with its text unchanged)."""
    by_id = {d.id: d for d in got}
    assert len(got) == len(sent) and set(by_id) == {d.id for d in sent}, 'documents lost or added'
    if check_text:
        assert [by_id[d.id].text for d in sent] == [d.text for d in sent], 'text changed on the way'
    return np.stack([np.asarray(by_id[d.id].embedding) for d in sent])


def _child(call_file):
    call = json.loads(Path(call_file).read_text())
    _offline_jina3()
    from docarray import DocList
    from jina import Client, Deployment
    from vseimageencoder.jina3 import ImageDoc, TextDoc

    images = np.load(call['images'])
    sent_images = DocList[ImageDoc]([ImageDoc(tensor=x) for x in images])
    captions = DocList[TextDoc]([TextDoc(text=c) for c in call['captions']])
    kw = dict(env=call['container_env'], volumes=call['volumes'], timeout_ready=300000)
    start = time.perf_counter()
    # The image's default entrypoint (config.yml: the image tower), and the same image with
    # the entrypoint naming text.yml, the way a jina 3 user picks the text tower.
    with Deployment(uses='docker://' + call['tag'], **kw) as dep, \
            Deployment(uses='docker://' + call['tag'], entrypoint='jina executor --uses text.yml',
                       **kw) as text_dep:
        ready_s = time.perf_counter() - start
        docs = dep.post('/encode', inputs=sent_images, return_type=DocList[ImageDoc], request_size=2)
        dep_texts = text_dep.post('/encode', inputs=captions, return_type=DocList[TextDoc], request_size=2)
        _wait_ready(call['text_port'], 240)
        text_ready_s = time.perf_counter() - start
        client = Client(host='127.0.0.1', port=call['text_port'], protocol='grpc')
        texts = client.post('/encode', inputs=captions, return_type=DocList[TextDoc], request_size=2)
    # Requests of 2 come back in the order they finish (jina's results_in_order is off by
    # default), so documents are matched to what was sent by id.
    got_images = _in_sent_order(sent_images, docs)
    got_texts = _in_sent_order(captions, texts, check_text=True)
    got_dep_texts = _in_sent_order(captions, dep_texts, check_text=True)
    np.savez(call['out'], images=got_images, texts=got_texts, deployment_texts=got_dep_texts)
    print(json.dumps({'deployments_ready_s': round(ready_s, 1), 'text_container_ready_s': round(text_ready_s, 1)}))


if __name__ == '__main__':
    _child(sys.argv[1])
