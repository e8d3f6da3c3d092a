"""The jina 3 Executors called in this process (real jina 3 Executor objects, no serving):
embeddings against the core and the independent references, every input form, bad input
named, nothing half-written."""
import http.server
import io
import threading

import numpy as np
import pytest
from docarray import DocList

from tests.support.vsepp_release import reference_embed, reference_text_embeds
from vseimageencoder.encoders import ImageEncoder, TextEncoder
from vseimageencoder.jina3 import CrossModalDoc, ImageDoc, TextDoc, VSEImageEncoder, VSETextEncoder
from vseimageencoder.images.transform import transform

pytestmark = pytest.mark.jina3

CAPTIONS = ['a man riding a horse on the beach .', 'two women playing with a red ball',
            'children in the snow', 'a dog', '', 'caf\u00e9 na\u00efve stra\u00dfe unknownword']


def data_url(pixels) -> str:
    import base64
    return 'data:image/png;base64,' + base64.b64encode(png_bytes(pixels)).decode('ascii')


def png_bytes(pixels) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format='PNG')
    return buf.getvalue()


@pytest.fixture(scope='module')
def image_root(tmp_path_factory):
    """The folder the module's image executor reads files from (its file_root)."""
    return tmp_path_factory.mktemp('images')


@pytest.fixture(scope='module')
def image_executor(release, image_root):
    # URLs on 127.0.0.1 are what the tests can serve: that one address is allowed.
    return VSEImageEncoder(model_path=str(release.folder), batch_size=4, file_root=str(image_root),
                           fetch_urls=True, allow_private_urls=['127.0.0.1/32'])


@pytest.fixture(scope='module')
def text_executor(release):
    return VSETextEncoder(model_path=str(release.checkpoint), batch_size=4)


def expected_images(release, pixels):
    x = np.stack([transform(p) for p in pixels])
    return reference_embed(release.backbone, release.fc, x)


def test_image_executor_equals_core_and_reference(release, pixels, image_executor):
    docs = DocList[ImageDoc]([ImageDoc(tensor=p) for p in pixels])
    out = image_executor.encode(docs=docs, parameters={})
    emb = np.stack([d.embedding for d in out])
    assert emb.shape == (len(pixels), 256) and emb.dtype == np.float32
    ref = expected_images(release, pixels)
    np.testing.assert_allclose(emb, ref, atol=2e-5)
    core = ImageEncoder(release.checkpoint)
    for p, e in zip(pixels, emb):  # the core one image at a time: batching and grouping change nothing
        np.testing.assert_allclose(core.encode(p[None].transpose(0, 3, 1, 2))[0], e, atol=1e-5)


def test_resize_exact_is_the_faithful_transform(release, pixels, tmp_path):
    exact = VSEImageEncoder(model_path=str(release.folder), batch_size=4, resize='exact',
                            file_root=str(tmp_path))
    f = tmp_path / 'x.png'
    f.write_bytes(png_bytes(pixels[0]))
    docs = DocList[ImageDoc]([ImageDoc(tensor=p) for p in pixels] + [ImageDoc(url=str(f))])
    emb = np.stack([d.embedding for d in exact.encode(docs=docs, parameters={})])
    x = np.stack([transform(p, resize='exact') for p in pixels] + [transform(pixels[0], resize='exact')])
    np.testing.assert_allclose(emb, reference_embed(release.backbone, release.fc, x), atol=2e-5)
    with pytest.raises(ValueError, match="'bilinear'"):
        VSEImageEncoder(model_path=str(release.folder), resize='bilinear')


def test_every_input_form_gives_the_same_embedding(release, pixels, image_executor, image_root):
    p = pixels[1]
    f = image_root / 'x.png'
    f.write_bytes(png_bytes(p))
    handler = type('H', (http.server.SimpleHTTPRequestHandler,), {
        'log_message': lambda *a: None,
        '__init__': lambda self, *a, **k: http.server.SimpleHTTPRequestHandler.__init__(
            self, *a, directory=str(image_root), **k)})
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        docs = DocList[ImageDoc]([
            ImageDoc(tensor=p),
            ImageDoc(tensor=p.astype(np.int64)),               # as JSON (HTTP) delivers it
            ImageDoc(tensor=transform(p)),                     # transformed float (3, H, W)
            ImageDoc(blob=png_bytes(p)),
            ImageDoc(url=str(f)),
            ImageDoc(url='x.png'),                             # relative to file_root
            ImageDoc(url=f.as_uri()),
            ImageDoc(url=data_url(p)),
            ImageDoc(url='http://127.0.0.1:%d/x.png' % server.server_address[1]),
        ])
        emb = np.stack([d.embedding for d in image_executor.encode(docs=docs, parameters={})])
    finally:
        server.shutdown()
        server.server_close()
    ref = expected_images(release, [p])[0]
    for row in emb:
        np.testing.assert_allclose(row, ref, atol=2e-5)


def test_batch_size_parameter_changes_nothing(pixels, image_executor):
    def run(**params):
        docs = DocList[ImageDoc]([ImageDoc(tensor=p) for p in pixels])
        return np.stack([d.embedding for d in image_executor.encode(docs=docs, parameters=params)])
    np.testing.assert_allclose(run(batch_size=1), run(batch_size=64), atol=1e-5)


def test_empty_request(image_executor, text_executor):
    assert len(image_executor.encode(docs=DocList[ImageDoc](), parameters={})) == 0
    assert len(text_executor.encode(docs=DocList[TextDoc](), parameters={})) == 0


@pytest.mark.parametrize('doc, message', [
    (ImageDoc(), 'has no image: set tensor, blob or url'),
    (ImageDoc(tensor=np.zeros((3, 10, 10), np.uint8)), r'tensor of shape \(3, 10, 10\) and dtype uint8'),
    (ImageDoc(tensor=np.zeros((10, 10, 4), np.uint8)), r'tensor of shape \(10, 10, 4\)'),
    (ImageDoc(tensor=np.zeros((10, 10, 3), np.float32)), r'tensor of shape \(10, 10, 3\) and dtype float32'),
    (ImageDoc(tensor=np.full((10, 10, 3), 300)), 'holds values from 300 to 300; pixels are 0..255'),
    (ImageDoc(tensor=np.full((3, 8, 8), np.nan, np.float32)), 'NaN or infinite'),
    (ImageDoc(tensor=np.zeros((0, 10, 3), np.uint8)), 'empty image'),
    (ImageDoc(blob=b'not an image at all'), 'blob of 19 bytes is not a readable image'),
    (ImageDoc(url='/no/such/file.jpg'), '/no/such/file.jpg'),
    (ImageDoc(url='ftp://example.invalid/x.jpg'), "unsupported URL scheme 'ftp'"),
    (ImageDoc(url='data:image/png;base64,@@@'), 'not valid base64'),
    (ImageDoc(url='data:image/png;base64,aGVsbG8='), '5 bytes that are not a readable image'),
])
def test_bad_image_named_and_nothing_written(pixels, image_executor, doc, message):
    docs = DocList[ImageDoc]([ImageDoc(tensor=pixels[0]), doc])
    with pytest.raises(ValueError, match=message) as e:
        image_executor.encode(docs=docs, parameters={})
    assert 'ImageDoc #1 (id %s)' % docs[1].id in str(e.value)
    assert all(d.embedding is None for d in docs)  # the good one was not embedded either


@pytest.mark.parametrize('bad', [0, -2, 1.5, 'eight', True])
def test_bad_batch_size_named(pixels, image_executor, text_executor, release, bad):
    docs = DocList[ImageDoc]([ImageDoc(tensor=pixels[0])])
    with pytest.raises(ValueError, match="request's batch_size parameter must be a positive integer"):
        image_executor.encode(docs=docs, parameters={'batch_size': bad})
    with pytest.raises(ValueError, match='batch_size must be a positive integer'):
        VSEImageEncoder(model_path=str(release.folder), batch_size=bad)


def test_bad_precision_and_missing_model_named(release, tmp_path):
    with pytest.raises(ValueError, match="precision='int8'"):
        VSEImageEncoder(model_path=str(release.folder), precision='int8')
    with pytest.raises(FileNotFoundError, match=str(tmp_path / 'nothing')):
        VSEImageEncoder(model_path=str(tmp_path / 'nothing'))


def test_text_executor_equals_core_and_reference(release, text_executor):
    docs = DocList[TextDoc]([TextDoc(text=c) for c in CAPTIONS])
    emb = np.stack([d.embedding for d in text_executor.encode(docs=docs, parameters={})])
    assert emb.shape == (len(CAPTIONS), 256) and emb.dtype == np.float32
    ref = reference_text_embeds(release.text_sd, release.words, CAPTIONS)
    np.testing.assert_allclose(emb, ref, atol=2e-5)
    core = TextEncoder(release.checkpoint)
    np.testing.assert_allclose(emb, core.encode(CAPTIONS), atol=1e-6)


def test_text_without_text_named(text_executor):
    docs = DocList[TextDoc]([TextDoc(text='a dog'), TextDoc()])
    with pytest.raises(ValueError, match=r'TextDoc #1 \(id %s\) has no text' % docs[1].id):
        text_executor.encode(docs=docs, parameters={})
    assert all(d.embedding is None for d in docs)


def test_each_executor_embeds_its_own_documents_and_leaves_the_others(release, pixels, image_executor,
                                                                      text_executor):
    """One schema for both: in a mixed request each tower embeds its documents (an image
    that also has text is an image) and leaves the rest untouched, in either order."""
    def mixed():
        return DocList[CrossModalDoc]([CrossModalDoc(text=CAPTIONS[0]), CrossModalDoc(tensor=pixels[0]),
                                       CrossModalDoc(blob=png_bytes(pixels[1]), text='a caption'),
                                       CrossModalDoc(text='')])
    docs = image_executor.encode(docs=mixed(), parameters={})
    assert [d.embedding is None for d in docs] == [True, False, False, True]
    docs = text_executor.encode(docs=docs, parameters={})
    other_way = image_executor.encode(docs=text_executor.encode(docs=mixed(), parameters={}), parameters={})
    emb = np.stack([d.embedding for d in docs])
    np.testing.assert_allclose(emb, np.stack([d.embedding for d in other_way]), atol=1e-6)
    np.testing.assert_allclose(emb[[1, 2]], expected_images(release, pixels[:2]), atol=2e-5)
    ref = reference_text_embeds(release.text_sd, release.words, (CAPTIONS[0], ''))
    np.testing.assert_allclose(emb[[0, 3]], np.stack(ref), atol=2e-5)
    # ImageDoc and TextDoc are that schema under each Executor's name.
    assert set(ImageDoc.model_fields) == set(TextDoc.model_fields) == set(CrossModalDoc.model_fields)


@pytest.mark.parametrize('which', ['image', 'text'])
def test_document_with_neither_image_nor_text_named(image_executor, text_executor, pixels, which):
    docs = DocList[CrossModalDoc]([CrossModalDoc(text='a dog'), CrossModalDoc(tensor=pixels[0]), CrossModalDoc()])
    executor = image_executor if which == 'image' else text_executor
    with pytest.raises(ValueError, match=r'CrossModalDoc #2 \(id %s\) has no %s'
                       % (docs[2].id, 'image' if which == 'image' else 'text')):
        executor.encode(docs=docs, parameters={})
    assert all(d.embedding is None for d in docs)


def test_request_errors_reach_jina_without_a_traceback(pixels, image_executor, text_executor):
    """jina 3 sends the client traceback.format_exception of what an Executor raises: for
    these errors that is the message alone, with no server path or object address."""
    import traceback

    from vseimageencoder.jina3.executors import RequestError

    for executor, docs, params in ((image_executor, DocList[ImageDoc]([ImageDoc(url='/etc/passwd')]), {}),
                                   (text_executor, DocList[TextDoc]([TextDoc(text='a')]), {'batch_size': 2.5})):
        with pytest.raises(RequestError) as e:
            executor.encode(docs=docs, parameters=params)
        sent = traceback.format_exception(type(e.value), e.value, e.value.__traceback__)
        assert len(sent) == 1 and sent[0].startswith('vseimageencoder.jina3.executors.RequestError: '), sent
        assert 'File "' not in sent[0] and ' at 0x' not in sent[0]
    # Integral floats (what gRPC and HTTP deliver) are integers; the text executor too.
    out = text_executor.encode(docs=DocList[TextDoc]([TextDoc(text='a dog')]), parameters={'batch_size': 2.0})
    assert out[0].embedding is not None


def test_fused_at_start_in_reduced_precision_with_the_same_embeddings(release, pixels, image_executor, tmp_path):
    """fuse=None fuses a bf16 tower for passes of batch_size and leaves fp32 alone; fuse=True
    fuses fp32 too and still gives the reference; fused or not, the same embeddings."""
    images = pixels + [pixels[0], pixels[2]]  # four of 64 x 80: one pass of the fused size

    def embed(executor):
        docs = DocList[ImageDoc]([ImageDoc(tensor=p) for p in images])
        return np.stack([d.embedding for d in executor.encode(docs=docs, parameters={})])

    def executor(**kw):
        return VSEImageEncoder(model_path=str(release.folder), file_root=str(tmp_path), **kw)

    assert image_executor.core.model.fused_batch_size is None  # fp32 by default: not fused
    auto, off = executor(precision='bf16', batch_size=4), executor(precision='bf16', batch_size=4, fuse=False)
    assert auto.core.model.fused_batch_size == 4 and off.core.model.fused_batch_size is None
    a, o = embed(auto), embed(off)
    assert float(((a * o).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(o, axis=1)).min()) > 0.999
    forced = executor(batch_size=4, fuse=True)
    assert forced.core.model.fused_batch_size == 4
    np.testing.assert_allclose(embed(forced), expected_images(release, images), atol=1e-4)
    with pytest.raises(TypeError, match='fuse'):
        executor(fuse='yes')
