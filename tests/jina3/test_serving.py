"""Real jina 3 serving on 127.0.0.1: Flows with both encoders (gRPC and HTTP, either order,
request parameters reaching both), the cross-modal example (Deployments:
test_deployments.py). Replicas and
gateways are spawned (the plugin sets JINA_MP_START_METHOD=spawn), since this process has
run torch."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from docarray import DocList

from tests.support.jina3_serving import started
from tests.jina3.test_deployments import error_text
from tests.jina3.test_executors import CAPTIONS, data_url, expected_images, png_bytes
from tests.support.vsepp_release import reference_text_embeds
from vseimageencoder.jina3 import CrossModalDoc
from vseimageencoder.images.transform import transform

pytestmark = pytest.mark.jina3

REPO = Path(__file__).resolve().parents[2]
IMAGE_YML = str(REPO / 'vseimageencoder' / 'jina3' / 'image.yml')
TEXT_YML = str(REPO / 'vseimageencoder' / 'jina3' / 'text.yml')


def mixed_request(pixels, tmp_path, protocol):
    """Images and captions in one request, interleaved; an image that also has text is an
    image. Over HTTP (JSON, 1 MiB) images go as small arrays, paths and data: URLs."""
    f = tmp_path / 'x.png'
    f.write_bytes(png_bytes(pixels[3]))
    images = [CrossModalDoc(tensor=pixels[0]), CrossModalDoc(url=str(f), text='ignored: has an image'),
              CrossModalDoc(url=data_url(pixels[1])), CrossModalDoc(tensor=pixels[4])]
    if protocol == 'grpc':
        images += [CrossModalDoc(blob=png_bytes(pixels[2])), CrossModalDoc(tensor=transform(pixels[5]))]
    # One document class for all: jina's client puts each request's documents in a DocList
    # of its first document's class, which ImageDoc and TextDoc are not of each other.
    captions = [CrossModalDoc(text=c) for c in CAPTIONS]
    docs, want_images = [], [pixels[0], pixels[3], pixels[1], pixels[4], pixels[2], pixels[5]]
    for i in range(max(len(images), len(captions))):
        docs += images[i:i + 1] + captions[i:i + 1]
    return DocList[CrossModalDoc](docs), want_images[:len(images)], CAPTIONS


@pytest.mark.parametrize('protocol, order', [('grpc', ('image', 'text')), ('http', ('text', 'image'))])
def test_flow_with_both_encoders(release, pixels, tmp_path, protocol, order):
    """Both encoders in one Flow, one after the other on /encode (the order does not
    matter), the first with 2 replicas: a request mixing images and captions comes back with
    every document embedded by its own tower."""
    from jina import Flow

    from vseimageencoder.encoders import ImageEncoder, TextEncoder

    sent, want_images, captions = mixed_request(pixels, tmp_path, protocol)
    uses = {'image': IMAGE_YML, 'text': TEXT_YML}
    flow = Flow(protocol=protocol, host='127.0.0.1', timeout_ctrl=5)
    for n, name in enumerate(order):
        with_ = {'model_path': str(release.folder)}
        if name == 'image':
            with_['file_root'] = str(tmp_path)
        flow = flow.add(name=name, uses=uses[name], uses_with=with_, replicas=2 if n == 0 else 1)
    with started(flow) as f:
        # Parameters reach both Executors as floats (2.0): batch_size counts it as 2.
        out = f.post('/encode', sent, request_size=3, parameters={'batch_size': 2},
                     return_type=DocList[CrossModalDoc])
        default = f.post('/', DocList[CrossModalDoc]([CrossModalDoc(text=captions[0]),
                                                      CrossModalDoc(tensor=pixels[0])]),
                         return_type=DocList[CrossModalDoc])
        with pytest.raises(Exception) as e:
            f.post('/encode', DocList[CrossModalDoc]([CrossModalDoc(text='a dog'), CrossModalDoc()]),
                   return_type=DocList[CrossModalDoc])
        with pytest.raises(Exception) as half:
            f.post('/encode', DocList[CrossModalDoc]([CrossModalDoc(text='a dog')]), parameters={'batch_size': 0.5},
                   return_type=DocList[CrossModalDoc])
    assert len(out) == len(sent)
    by_id = {d.id: d.embedding for d in out}  # requests of 3 may come back in any order
    is_image = [d.text is None or d.url is not None for d in sent]
    img = np.stack([by_id[d.id] for d, yes in zip(sent, is_image) if yes])
    txt = np.stack([by_id[d.id] for d, yes in zip(sent, is_image) if not yes])
    assert img.shape[1] == txt.shape[1] == 256
    if protocol == 'grpc':  # JSON has no dtype: over HTTP they come back as Python floats
        assert img.dtype == txt.dtype == np.float32
    np.testing.assert_allclose(img, expected_images(release, want_images), atol=2e-5)
    np.testing.assert_allclose(img, ImageEncoder(release.checkpoint).encode(
        np.stack([transform(p) for p in want_images])), atol=1e-5)
    ref = reference_text_embeds(release.text_sd, release.words, captions)
    np.testing.assert_allclose(txt, ref, atol=2e-5)
    np.testing.assert_allclose(txt, TextEncoder(release.checkpoint).encode(captions), atol=1e-6)
    np.testing.assert_allclose(np.stack([d.embedding for d in default]), np.stack([txt[0], img[0]]), atol=1e-5)
    # The document with neither image nor text is named by whichever encoder comes first.
    assert ('%s #1' % ('ImageDoc' if order[0] == 'image' else 'TextDoc')) in str(e.value)
    assert ('has no image' if order[0] == 'image' else 'has no text') in str(e.value)
    assert "the request's batch_size parameter must be a positive integer, got 0.5" in error_text(half.value)
    assert 'Traceback' not in error_text(e.value) + error_text(half.value)


def test_crossmodal_example(release, pixels, tmp_path):
    folder = tmp_path / 'photos'
    folder.mkdir()
    for i, p in enumerate(pixels[:4]):
        (folder / ('%d.png' % i)).write_bytes(png_bytes(p))
    r = subprocess.run([sys.executable, str(REPO / 'examples' / 'jina3_crossmodal.py'),
                        '--model', str(release.folder), '--images', str(folder),
                        '--query', 'a dog', 'children in the snow', '--top-k', '3'],
                       cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # The results alone on stdout (`> hits.json` must work); jina's logs on stderr.
    results = json.loads(r.stdout)
    assert 'Flow' in r.stderr or 'executor' in r.stderr.lower()
    assert [q['query'] for q in results] == ['a dog', 'children in the snow']
    img = expected_images(release, pixels[:4])
    for q in results:
        txt = reference_text_embeds(release.text_sd, release.words, [q['query']])[0]
        scores = img @ txt
        want = [str(folder / ('%d.png' % i)) for i in np.argsort(-scores, kind='stable')[:3]]
        assert [h['image'] for h in q['hits']] == want
        np.testing.assert_allclose([h['score'] for h in q['hits']], sorted(scores, reverse=True)[:3], atol=1e-4)
