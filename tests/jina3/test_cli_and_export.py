"""`jina executor --uses image.yml` as its own process; Kubernetes and docker-compose export of
the Executors, checked for image, ports, replicas and the config they name; the 0.9
executor's import error on this Python."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from docarray import DocList

from tests.support.jina3_serving import free_port, stop_process_group, wait_grpc_ready
from tests.jina3.test_executors import expected_images
from vseimageencoder.jina3 import ImageDoc

pytestmark = pytest.mark.jina3

REPO = Path(__file__).resolve().parents[2]
IMAGE_YML = REPO / 'vseimageencoder' / 'jina3' / 'image.yml'
TAG = 'vseimageencoder-jina3:test'


def test_jina_executor_process(release, pixels, tmp_path):
    from jina import Client

    port = free_port()
    jina = Path(sys.executable).parent / 'jina'
    log = open(tmp_path / 'executor.log', 'w')
    proc = subprocess.Popen(
        [str(jina), 'executor', '--uses', str(IMAGE_YML), '--port', str(port), '--host', '127.0.0.1',
         '--uses-with', json.dumps({'model_path': str(release.folder), 'batch_size': 2})],
        cwd=str(tmp_path), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_grpc_ready(port, 180, proc)
        out = Client(host='127.0.0.1', port=port, protocol='grpc').post(
            '/encode', DocList[ImageDoc]([ImageDoc(tensor=p) for p in pixels]), return_type=DocList[ImageDoc])
    finally:
        stop_process_group(proc)
        log.close()
    np.testing.assert_allclose(np.stack([d.embedding for d in out]), expected_images(release, pixels), atol=2e-5)
    assert 'VSE++ image tower ready on cpu' in (tmp_path / 'executor.log').read_text()


def _container_args(container):
    args = container.get('args') or []
    return args if isinstance(args, list) else str(args).split()


def test_kubernetes_export(tmp_path):
    from jina import Deployment

    d = Deployment(name='vse-image', uses='docker://' + TAG, replicas=2, port=8080,
                   uses_with={'model_path': 'pretrained', 'precision': 'fp32'})
    d.to_kubernetes_yaml(str(tmp_path / 'k8s'), k8s_namespace='vse')
    docs = [doc for f in sorted((tmp_path / 'k8s').rglob('*.yml')) for doc in yaml.safe_load_all(f.read_text()) if doc]
    deployments = [doc for doc in docs if doc['kind'] == 'Deployment']
    services = [doc for doc in docs if doc['kind'] == 'Service']
    executor = [doc for doc in deployments if any(c['image'] == TAG for c in doc['spec']['template']['spec']['containers'])]
    assert len(executor) == 1, [c['image'] for doc in deployments for c in doc['spec']['template']['spec']['containers']]
    assert executor[0]['spec']['replicas'] == 2
    assert executor[0]['metadata']['namespace'] == 'vse'
    container = next(c for c in executor[0]['spec']['template']['spec']['containers'] if c['image'] == TAG)
    args = _container_args(container)
    assert args[0] == 'executor' and args[args.index('--uses') + 1] == 'config.yml'
    assert json.loads(args[args.index('--uses-with') + 1]) == {'model_path': 'pretrained', 'precision': 'fp32'}
    assert 8080 in [p['containerPort'] for p in container.get('ports', [])]
    assert any(p['port'] == 8080 for s in services for p in s['spec']['ports'])
    assert '--host' not in args or args[args.index('--host') + 1] != '127.0.0.1'
    # A Deployment's export has no gateway (docs/jina3.md says so): its clients call the
    # Executor's Service. A Flow's export adds one.
    images = [c['image'] for doc in deployments for c in doc['spec']['template']['spec']['containers']]
    assert images == [TAG], images
    assert os.environ['JINA_GATEWAY_IMAGE'] not in images


def test_kubernetes_export_of_a_flow_has_a_gateway(tmp_path):
    from jina import Flow

    Flow(port=8081).add(name='image', uses='docker://' + TAG, replicas=2).to_kubernetes_yaml(
        str(tmp_path / 'k8s'), k8s_namespace='vse')
    docs = [doc for f in sorted((tmp_path / 'k8s').rglob('*.yml')) for doc in yaml.safe_load_all(f.read_text()) if doc]
    images = sorted(c['image'] for doc in docs if doc['kind'] == 'Deployment'
                    for c in doc['spec']['template']['spec']['containers'])
    assert images == sorted([TAG, os.environ['JINA_GATEWAY_IMAGE']]), images
    assert [doc['metadata']['name'] for doc in docs if doc['kind'] == 'Service' and
            doc['metadata']['name'] == 'gateway'] == ['gateway']


def test_docker_compose_export(tmp_path):
    from jina import Flow

    f = (Flow(port=8081, protocol='http')
         .add(name='image', uses='docker://' + TAG, replicas=2, uses_with={'model_path': 'pretrained'})
         .add(name='text', uses='docker://' + TAG.replace('jina3', 'jina3-text'), uses_with={'model_path': 'pretrained'}))
    out = tmp_path / 'docker-compose.yml'
    f.to_docker_compose_yaml(str(out), network_name='vse')
    services = yaml.safe_load(out.read_text())['services']
    image_services = {k: v for k, v in services.items() if v['image'] == TAG}
    assert len(image_services) == 2, list(services)  # one service per replica
    for svc in image_services.values():
        cmd = svc['command'] if isinstance(svc['command'], list) else str(svc['command']).split()
        assert cmd[0] == 'executor' and cmd[cmd.index('--uses') + 1] == 'config.yml'
        assert json.loads(cmd[cmd.index('--uses-with') + 1]) == {'model_path': 'pretrained'}
    gateway = services['gateway']
    assert gateway['image'] == os.environ['JINA_GATEWAY_IMAGE']
    assert any(str(p).startswith('8081:') for p in gateway['ports'])
    assert sum(v['image'] == TAG.replace('jina3', 'jina3-text') for v in services.values()) == 1


def test_jina09_executor_import_says_what_to_install():
    import importlib
    with pytest.raises(ImportError) as e:
        importlib.import_module('vseimageencoder.jina09.executor')
    msg = str(e.value)
    for part in ('jina==0.9.33', 'Python 3.8 or 3.9', 'jina 3.34.0 installed', 'scripts/setup.sh',
                 'from vseimageencoder.jina3 import', 'scripts/setup.sh --jina3'):
        assert part in msg, (part, msg)
    import vseimageencoder
    with pytest.raises(ImportError, match='jina==0.9.33'):
        vseimageencoder.VSEImageEncoder


def test_core_requirements_on_this_python(tmp_path):
    # What `pip install .` asks for on this Python, from setup.py's metadata written afresh
    # (a repository-root egg-info may be stale): no jina unless the jina3 extra is asked for.
    from importlib.metadata import PathDistribution

    from packaging.requirements import Requirement

    subprocess.run([sys.executable, 'setup.py', '-q', 'egg_info', '--egg-base', str(tmp_path)],
                   cwd=str(REPO), check=True, capture_output=True)
    reqs = [Requirement(r) for r in PathDistribution(tmp_path / 'vseimageencoder.egg-info').requires]
    plain = {r.name for r in reqs if r.marker is None or r.marker.evaluate({'extra': ''})}
    with_extra = {r.name for r in reqs if r.marker is not None and r.marker.evaluate({'extra': 'jina3'})}
    assert 'jina' not in plain and 'protobuf' not in plain
    assert {'torch', 'torchvision', 'numpy', 'nltk'} <= plain
    assert 'jina' in with_extra
    py39 = {'extra': '', 'python_version': '3.9', 'python_full_version': '3.9.18'}
    assert 'jina' in {r.name for r in reqs if r.marker is not None and r.marker.evaluate(py39)}
