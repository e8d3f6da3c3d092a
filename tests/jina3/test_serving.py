"""Real jina 3 serving on 127.0.0.1: Deployments with 2 replicas over gRPC and HTTP, a Flow,
the cross-modal example (both encoders served side by side). Replicas and gateways are spawned (the plugin
sets JINA_MP_START_METHOD=spawn), since this process has run torch."""
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from docarray import DocList

from tests.jina3.serving import started
from tests.jina3.test_executors import data_url, expected_images, png_bytes, reference_ids
from tests.vsepp_release import reference_text_embed
from vseimageencoder.jina3 import ImageDoc, TextDoc

REPO = Path(__file__).resolve().parents[2]
IMAGE_YML = str(REPO / 'vseimageencoder' / 'jina3' / 'image.yml')
TEXT_YML = str(REPO / 'vseimageencoder' / 'jina3' / 'text.yml')


def deployment(release, protocol, replicas=2, yml=IMAGE_YML):
    from jina import Deployment
    return Deployment(uses=yml, uses_with={'model_path': str(release.folder)}, replicas=replicas,
                      protocol=protocol, host='127.0.0.1', timeout_ctrl=5)


def test_grpc_deployment_two_replicas(release, pixels):
    from jina.excepts import BadServer

    many = pixels * 3 + pixels[:2]  # 20 images, sent 4 per request: both replicas get work
    sent = DocList[ImageDoc]([ImageDoc(tensor=p) for p in many])
    with started(deployment(release, 'grpc')) as d:
        out = d.post('/encode', sent, request_size=4, return_type=DocList[ImageDoc])
        default = d.post('/default', DocList[ImageDoc]([ImageDoc(tensor=pixels[0])]),
                         return_type=DocList[ImageDoc])
        with pytest.raises(BadServer) as e:
            d.post('/encode', DocList[ImageDoc]([ImageDoc(tensor=pixels[0]),
                                                 ImageDoc(tensor=np.zeros((5, 5), np.float32))]),
                   return_type=DocList[ImageDoc])
    assert len(out) == 20
    # Requests come back in the order the replicas finish them: match documents by id.
    by_id = {doc.id: doc.embedding for doc in out}
    emb = np.stack([by_id[doc.id] for doc in sent])
    np.testing.assert_allclose(emb, expected_images(release, many), atol=2e-5)
    np.testing.assert_allclose(default[0].embedding, emb[0], atol=1e-6)
    assert 'ImageDoc #1' in str(e.value) and r'tensor of shape (5, 5) and dtype float32' in str(e.value)


def test_http_deployment_two_replicas(release, pixels, tmp_path):
    # JSON bodies over 1 MiB are dropped by jina 3.34's HTTP load balancer, and JSON has no
    # bytes: small arrays, file paths and image bytes as data: URLs here; full-size tensors
    # and blobs belong on gRPC.
    f = tmp_path / 'x.png'
    f.write_bytes(png_bytes(pixels[3]))
    docs = DocList[ImageDoc]([ImageDoc(tensor=pixels[0]), ImageDoc(url=str(f)),
                              ImageDoc(url=data_url(pixels[3])), ImageDoc(tensor=pixels[4])])
    with started(deployment(release, 'http')) as d:
        out = d.post('/encode', docs, return_type=DocList[ImageDoc])
        with pytest.raises(Exception) as e:
            d.post('/encode', DocList[ImageDoc]([ImageDoc(url=str(tmp_path / 'missing.jpg'))]),
                   return_type=DocList[ImageDoc])
    emb = np.stack([doc.embedding for doc in out])
    np.testing.assert_allclose(emb, expected_images(release, [pixels[0], pixels[3], pixels[3], pixels[4]]),
                               atol=2e-5)
    assert 'ImageDoc #0' in str(e.value) and 'missing.jpg' in str(e.value)


def test_flow_text_encoder_two_replicas(release):
    # A Flow of each encoder works; one Flow holding both does not yet (jina 3.34 checks
    # that Executors on the same endpoint share one document schema; README: jina 3).
    from jina import Flow

    captions = ['a man riding a horse', 'two dogs in the snow', '']
    flow = Flow(host='127.0.0.1', timeout_ctrl=5).add(
        name='text', uses=TEXT_YML, uses_with={'model_path': str(release.checkpoint)}, replicas=2)
    with started(flow) as f:
        texts = f.post('/encode', DocList[TextDoc]([TextDoc(text=c) for c in captions]),
                       return_type=DocList[TextDoc])
        with pytest.raises(Exception, match='TextDoc #0 .* has no text'):
            f.post('/encode', DocList[TextDoc]([TextDoc()]), return_type=DocList[TextDoc])
    ref = np.stack([reference_text_embed(release.text_sd, reference_ids(c, release.words)) for c in captions])
    np.testing.assert_allclose(np.stack([d.embedding for d in texts]), ref, atol=2e-5)


def test_crossmodal_example(release, pixels, tmp_path):
    folder = tmp_path / 'photos'
    folder.mkdir()
    for i, p in enumerate(pixels[:4]):
        (folder / ('%d.png' % i)).write_bytes(png_bytes(p))
    out = tmp_path / 'hits.json'
    r = subprocess.run([sys.executable, str(REPO / 'examples' / 'jina3_crossmodal.py'),
                        '--model', str(release.folder), '--images', str(folder),
                        '--query', 'a dog', 'children in the snow', '--top-k', '3', '--out', str(out)],
                       cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = json.loads(out.read_text())
    assert [q['query'] for q in results] == ['a dog', 'children in the snow']
    img = expected_images(release, pixels[:4])
    for q in results:
        txt = reference_text_embed(release.text_sd, reference_ids(q['query'], release.words))
        scores = img @ txt
        want = [str(folder / ('%d.png' % i)) for i in np.argsort(-scores, kind='stable')[:3]]
        assert [h['image'] for h in q['hits']] == want
        np.testing.assert_allclose([h['score'] for h in q['hits']], sorted(scores, reverse=True)[:3], atol=1e-4)
