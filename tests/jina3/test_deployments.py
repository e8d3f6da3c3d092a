"""Real jina 3 Deployments on 127.0.0.1: of the image Executor, one over gRPC (2 replicas)
and one over HTTP, shared by the tests of this module; of the text Executor, one per
protocol. Request parameters as they travel, every rule for local files and URLs, error
replies without server internals, and an HTTP Deployment that leaves its ``with`` block.

Every server these tests can reach is on loopback, so: the gRPC Deployment allows the one
network ``127.0.0.1/32`` (``allow_private_urls=['127.0.0.1/32']``) to fetch from a test
server and shows every other private target refused, also behind a redirect from the allowed
server; the HTTP Deployment allows no private address and shows 127.0.0.1 refused, by
address and by name.
"""
import http.server
import os
import re
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from docarray import DocList

from tests.support.jina3_serving import descendants, started
from tests.jina3.test_executors import data_url, expected_images, png_bytes
from vseimageencoder.jina3 import ImageDoc

pytestmark = pytest.mark.jina3

REPO = Path(__file__).resolve().parents[2]
IMAGE_YML = str(REPO / 'vseimageencoder' / 'jina3' / 'image.yml')
TEXT_YML = str(REPO / 'vseimageencoder' / 'jina3' / 'text.yml')
#: Seconds for all URL fetches of one request, in both Deployments.
URL_TIMEOUT = 3


def error_text(exc: BaseException) -> str:
    """What a failed request told the client: the status jina's client raises with (its
    description, the exception's arguments and the stack lines), else the exception's text."""
    first = exc.args[0] if exc.args else None
    if isinstance(first, dict) and isinstance(first.get('detail'), str):  # the HTTP client's
        return first['detail']
    status = getattr(first, 'status', None)
    if status is None:
        return str(exc)
    return '\n'.join([status.description, *status.exception.args, *status.exception.stacks])


def assert_no_internals(message: str) -> None:
    """What a client is told carries no traceback, no path of the server's code or
    interpreter and no object address."""
    for leak in ('Traceback', 'File "', 'site-packages', str(REPO), sys.prefix, ' at 0x', ', line '):
        assert leak not in message, (leak, message)


@pytest.fixture(scope='module')
def files(tmp_path_factory, pixels):
    """root: the Deployments' file_root; outside: a folder beside it."""
    root, outside = tmp_path_factory.mktemp('root'), tmp_path_factory.mktemp('outside')
    (root / 'a.png').write_bytes(png_bytes(pixels[0]))
    (root / 'sub').mkdir()
    (root / 'sub' / 'b.png').write_bytes(png_bytes(pixels[1]))
    (outside / 'secret.png').write_bytes(png_bytes(pixels[2]))
    (root / 'inner_link.png').symlink_to(root / 'sub' / 'b.png')
    (root / 'outer_link.png').symlink_to(outside / 'secret.png')
    (root / 'outer_dangling.png').symlink_to(outside / 'missing.png')
    os.mkfifo(str(root / 'fifo.png'))
    return SimpleNamespace(root=root, outside=outside)


class _Handler(http.server.BaseHTTPRequestHandler):
    """/a.png: an image; /redirect?to=URL: a 302 to URL; /slow: headers at once, then one
    byte every 0.2 s for a minute."""
    image = b''

    def log_message(self, *args):
        pass

    def do_GET(self):
        path, _, query = self.path.partition('?')
        if path == '/a.png':
            self.send_response(200)
            self.send_header('Content-Length', str(len(self.image)))
            self.end_headers()
            self.wfile.write(self.image)
        elif path == '/redirect':
            self.send_response(302)
            self.send_header('Location', urllib.parse.parse_qs(query)['to'][0])
            self.end_headers()
        elif path == '/slow':
            self.send_response(200)
            self.send_header('Content-Length', '1000000')
            self.end_headers()
            try:
                for _ in range(300):
                    self.wfile.write(b'\x89')
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
        else:
            self.send_error(404)


@pytest.fixture(scope='module')
def web(pixels):
    handler = type('H', (_Handler,), {'image': png_bytes(pixels[3])})
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield SimpleNamespace(url='http://127.0.0.1:%d' % server.server_address[1], port=server.server_address[1])
    server.shutdown()
    server.server_close()


def _deployment(release, protocol, **uses_with):
    from jina import Deployment
    return Deployment(uses=IMAGE_YML, uses_with=dict(model_path=str(release.folder), url_timeout=URL_TIMEOUT,
                                                     **uses_with),
                      replicas=2 if protocol == 'grpc' else 1, protocol=protocol, host='127.0.0.1',
                      timeout_ctrl=5)


@pytest.fixture(scope='module')
def grpc_dep(release, files):
    with started(_deployment(release, 'grpc', file_root=str(files.root), fetch_urls=True,
                             allow_private_urls=['127.0.0.1/32'])) as d:
        yield d


class _Exiting:
    """An HTTP Deployment whose exit a test can time (:meth:`close`); the fixture closes it
    if no test did."""

    def __init__(self, deployment):
        self.deployment = deployment
        self._cm = started(deployment)
        self.exit_seconds = None

    def __enter__(self):
        return self._cm.__enter__()

    def close(self) -> float:
        if self.exit_seconds is None:
            t0 = time.monotonic()
            self._cm.__exit__(None, None, None)
            self.exit_seconds = time.monotonic() - t0
        return self.exit_seconds


@pytest.fixture(scope='module')
def http_dep(release, files):
    holder = _Exiting(_deployment(release, 'http', file_root=str(files.root), fetch_urls=True))
    holder.__enter__()
    try:
        yield holder
    finally:
        holder.close()


def post(d, docs, **kwargs):
    return d.post('/encode', DocList[ImageDoc](docs), return_type=DocList[ImageDoc], **kwargs)


def refusal(d, doc, pixels) -> str:
    """The error message of a request whose second document is ``doc``; that document is
    named in it."""
    docs = [ImageDoc(tensor=pixels[0]), doc]
    with pytest.raises(Exception) as e:
        post(d, docs)
    message = error_text(e.value)
    assert 'ImageDoc #1 (id %s)' % docs[1].id in message, message
    assert_no_internals(message)
    assert_no_internals(str(e.value))
    return message


# ---------------------------------------------------------------- request parameters


@pytest.mark.parametrize('protocol', ['grpc', 'http'])
def test_batch_size_parameter_over_the_wire(grpc_dep, http_dep, pixels, release, protocol):
    """Request parameters arrive as floats (a protobuf Struct, or JSON made into one):
    batch_size 2 arrives as 2.0 and is 2; 2.5 is refused, named."""
    d = grpc_dep if protocol == 'grpc' else http_dep.deployment
    small = [p[:40, :40] for p in pixels[:5]]  # small enough for HTTP's JSON
    out = post(d, [ImageDoc(tensor=p) for p in small], parameters={'batch_size': 2})
    np.testing.assert_allclose(np.stack([doc.embedding for doc in out]), expected_images(release, small),
                               atol=2e-5)
    with pytest.raises(Exception) as e:
        post(d, [ImageDoc(tensor=small[0])], parameters={'batch_size': 2.5})
    assert "the request's batch_size parameter must be a positive integer, got 2.5" in error_text(e.value)
    assert_no_internals(error_text(e.value))



def test_grpc_deployment_two_replicas(grpc_dep, pixels, release):
    many = pixels * 3 + pixels[:2]  # 20 images, sent 4 per request: both replicas get work
    sent = DocList[ImageDoc]([ImageDoc(tensor=p) for p in many])
    out = grpc_dep.post('/encode', sent, request_size=4, return_type=DocList[ImageDoc])
    default = grpc_dep.post('/default', DocList[ImageDoc]([ImageDoc(tensor=pixels[0])]),
                            return_type=DocList[ImageDoc])
    assert len(out) == 20
    # Requests come back in the order the replicas finish them: match documents by id.
    by_id = {doc.id: doc.embedding for doc in out}
    emb = np.stack([by_id[doc.id] for doc in sent])
    np.testing.assert_allclose(emb, expected_images(release, many), atol=2e-5)
    np.testing.assert_allclose(default[0].embedding, emb[0], atol=1e-6)


@pytest.mark.parametrize('protocol', ['grpc', 'http'])
def test_text_batch_size_parameter_over_the_wire(release, protocol):
    """The text Executor's one request parameter, the same way (its own Deployment)."""
    from jina import Deployment

    from tests.support.vsepp_release import reference_text_embeds
    from vseimageencoder.jina3 import TextDoc

    captions = ['a dog', 'children in the snow', 'a man riding a horse on the beach .']
    d = Deployment(uses=TEXT_YML, uses_with={'model_path': str(release.folder)}, protocol=protocol,
                   host='127.0.0.1', timeout_ctrl=5)
    with started(d):
        out = d.post('/encode', DocList[TextDoc]([TextDoc(text=c) for c in captions]),
                     parameters={'batch_size': 2}, return_type=DocList[TextDoc])
        with pytest.raises(Exception) as e:
            d.post('/encode', DocList[TextDoc]([TextDoc(text='a dog')]), parameters={'batch_size': 2.5},
                   return_type=DocList[TextDoc])
    np.testing.assert_allclose(np.stack([t.embedding for t in out]),
                               reference_text_embeds(release.text_sd, release.words, captions), atol=2e-5)
    assert "the request's batch_size parameter must be a positive integer, got 2.5" in error_text(e.value)
    assert_no_internals(error_text(e.value))


# ---------------------------------------------------------------- local files


def test_files_under_file_root_are_read(grpc_dep, files, pixels, release):
    docs = [ImageDoc(url=str(files.root / 'a.png')), ImageDoc(url='a.png'), ImageDoc(url='sub/b.png'),
            ImageDoc(url=(files.root / 'sub' / 'b.png').as_uri()), ImageDoc(url='inner_link.png'),
            ImageDoc(url='sub/../a.png')]
    out = post(grpc_dep, docs)
    want = expected_images(release, [pixels[0], pixels[0], pixels[1], pixels[1], pixels[1], pixels[0]])
    np.testing.assert_allclose(np.stack([d.embedding for d in out]), want, atol=2e-5)


def test_paths_outside_file_root_refused_alike_existing_or_not(grpc_dep, files, pixels):
    """Outside the root: one message whether the file exists, is missing, or is reached by
    a symlink or '..' (symlinks are resolved before the check)."""
    secret, missing = files.outside / 'secret.png', files.outside / 'missing.png'
    up = '../%s/' % files.outside.name
    cases = [(str(secret), str(secret)), (str(missing), str(missing)),
             ('outer_link.png', 'outer_link.png'), ('outer_dangling.png', 'outer_dangling.png'),
             (up + 'secret.png', up + 'secret.png'), (up + 'missing.png', up + 'missing.png'),
             (secret.as_uri(), str(secret)), (missing.as_uri(), str(missing))]
    for url, path in cases:
        message = refusal(grpc_dep, ImageDoc(url=url), pixels)
        # One wording for all, the client's own url and path in it and nothing else.
        assert re.search(r'ImageDoc #1 \(id \w+\): url (.+?) refused \(rule file_root\): path (.+?) is '
                         r'outside the folder this server reads images from \(file_root\)', message), message
        found = re.search(r'url (.+?) refused \(rule file_root\): path (.+?) is outside', message).groups()
        assert found == (url, path), (found, url, path)
        if not url.startswith(('/', 'file:', '..')):  # a symlink: where it points stays unsaid
            assert str(files.outside) not in message and 'secret' not in message, message


def test_fifo_and_folder_refused_without_blocking(grpc_dep, files, pixels):
    t0 = time.monotonic()
    message = refusal(grpc_dep, ImageDoc(url='fifo.png'), pixels)
    assert 'refused (rule regular-file)' in message and 'a FIFO' in message
    assert time.monotonic() - t0 < 30  # opening a FIFO for reading would wait for a writer for ever
    assert 'refused (rule regular-file)' in refusal(grpc_dep, ImageDoc(url='sub'), pixels)
    # Inside the root a missing file is named as missing (the root's content is the client's to know).
    assert 'no such file: nothing.png' in refusal(grpc_dep, ImageDoc(url='nothing.png'), pixels)


# ---------------------------------------------------------------- URLs


def test_allowed_url_and_redirect_are_fetched(grpc_dep, web, pixels, release):
    docs = [ImageDoc(url=web.url + '/a.png'),
            ImageDoc(url=web.url + '/redirect?to=' + urllib.parse.quote(web.url + '/a.png'))]
    out = post(grpc_dep, docs)
    np.testing.assert_allclose(np.stack([d.embedding for d in out]), expected_images(release, [pixels[3]] * 2),
                               atol=2e-5)


@pytest.mark.parametrize('target, rule', [
    ('http://127.0.0.2:{port}/a.png', 'loopback'),
    ('http://[::1]:{port}/a.png', 'loopback'),
    ('http://10.20.30.40/a.png', 'private'),
    ('http://192.168.1.1/a.png', 'private'),
    ('http://169.254.169.254/latest/meta-data/', 'cloud-metadata'),
    ('http://[fd00:ec2::254]/latest/meta-data/', 'cloud-metadata'),
    ('http://169.254.10.10/a.png', 'link-local'),
    ('http://[::ffff:10.1.1.1]/a.png', 'private'),
])
def test_private_targets_refused_directly_and_behind_a_redirect(grpc_dep, web, pixels, target, rule):
    """Every non-public address outside the allowed network is refused before any
    connection (netguard would fail the run for traffic beyond 127.0.0.1), also where an
    allowed server redirects to it."""
    target = target.format(port=web.port)
    direct = refusal(grpc_dep, ImageDoc(url=target), pixels)
    assert 'refused (rule %s)' % rule in direct, direct
    hop = refusal(grpc_dep, ImageDoc(url=web.url + '/redirect?to=' + urllib.parse.quote(target)), pixels)
    assert 'refused (rule %s)' % rule in hop, hop


def test_loopback_refused_by_address_and_by_name(http_dep, web, pixels):
    """Without allow_private_urls, 127.0.0.1 is refused, also as a name that resolves to it
    (the check is on the resolved addresses), and over HTTP the error is as clean."""
    d = http_dep.deployment
    assert 'refused (rule loopback)' in refusal(d, ImageDoc(url=web.url + '/a.png'), pixels)
    assert 'refused (rule loopback)' in refusal(d, ImageDoc(url='http://localhost:%d/a.png' % web.port), pixels)


def test_fetching_is_off_and_files_stay_in_the_working_directory_by_default(release, tmp_path, web, pixels):
    """The defaults (no file_root, no fetch_urls given), on an Executor in this process:
    URLs refused, files outside the working directory refused."""
    from vseimageencoder.jina3 import VSEImageEncoder
    from vseimageencoder.jina3.executors import RequestError

    f = tmp_path / 'x.png'
    f.write_bytes(png_bytes(pixels[0]))
    default = VSEImageEncoder(model_path=str(release.folder))
    assert default.sources.file_root == os.path.realpath(os.getcwd())
    for url, rule in ((web.url + '/a.png', 'fetch_urls'), (str(f), 'file_root')):
        docs = DocList[ImageDoc]([ImageDoc(url=url)])
        with pytest.raises(RequestError, match=r'refused \(rule %s\)' % rule):
            default.encode(docs=docs, parameters={})


def test_one_deadline_for_all_urls_of_a_request(grpc_dep, web, pixels):
    """Two URLs that trickle a byte every 0.2 s: the request ends at url_timeout in total
    (a timeout per read would never fire, and per URL would take twice as long)."""
    t0 = time.monotonic()
    message = refusal(grpc_dep, ImageDoc(url=web.url + '/slow'), pixels)
    assert 'refused (rule url_timeout)' in message
    docs = [ImageDoc(url=web.url + '/slow'), ImageDoc(url=web.url + '/slow')]
    t1 = time.monotonic()
    with pytest.raises(Exception) as e:
        post(grpc_dep, docs)
    both = time.monotonic() - t1
    assert 'ImageDoc #0' in error_text(e.value) and 'url_timeout' in error_text(e.value)
    assert t1 - t0 < URL_TIMEOUT + 15 and both < URL_TIMEOUT + 15, (t1 - t0, both)
    # The replicas serve on.
    assert len(post(grpc_dep, [ImageDoc(url='a.png')])) == 1


def test_error_names_document_without_server_internals(grpc_dep, http_dep, pixels):
    for d in (grpc_dep, http_dep.deployment):
        message = refusal(d, ImageDoc(tensor=np.zeros((5, 5), np.float32)), pixels)
        assert 'tensor of shape (5, 5) and dtype float' in message  # float64 once it was JSON


def test_data_url_and_small_tensors_over_http(http_dep, pixels, release):
    out = post(http_dep.deployment, [ImageDoc(url=data_url(pixels[3])), ImageDoc(url='a.png'),
                                     ImageDoc(tensor=pixels[4])])
    np.testing.assert_allclose(np.stack([d.embedding for d in out]),
                               expected_images(release, [pixels[3], pixels[0], pixels[4]]), atol=2e-5)


# ---------------------------------------------------------------- exit (keep last)


def test_http_deployment_leaves_its_with_block_promptly(http_dep):
    """jina 3.34's HTTP load balancer never stopped (the Deployment waited 60 s, then for
    ever); with vseimageencoder.jina3.local.fix_http_shutdown the block ends, and no process
    of the Deployment is left. (About a second with forked pods on an idle machine; spawned
    pods on a loaded 2-core one took 20 s, as long as the gRPC Deployment's exit there.)"""
    lb_pid = http_dep.deployment.gateway_pod.worker.pid
    seconds = http_dep.close()  # started() fails it if the balancer still runs 45 s into the exit
    assert seconds < 60  # an unfixed one waits timeout_ctrl (60 s) and then for ever
    assert lb_pid not in descendants(os.getpid())
