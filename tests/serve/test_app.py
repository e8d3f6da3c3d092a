"""``vseimageencoder serve`` over HTTP: a real uvicorn server on 127.0.0.1, a real index built
by ``vseimageencoder index`` from generated photos with a random-weight checkpoint in the
release layout. Answers equal the ``search`` command's; every bad input gets a JSON 4xx
naming its fault and the server keeps serving; only indexed files are ever served."""
import http.client
import io
import json
import re
import struct
import sys
import urllib.parse
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from tests.support.serving_web import (CAPTIONS, cli, get, get_json, multipart, request, serving,
                               write_model, write_photos)

K = 5


class Site:
    def __init__(self, root, model, photos, index, server):
        self.root, self.model, self.photos, self.index, self.server = root, model, photos, index, server

    @property
    def url(self):
        return self.server.url

    def photo(self, name) -> Path:
        return next(p for p in self.photos if p.name == name)


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp('serve')
    model = write_model(root / 'model')
    photos = write_photos(root / 'photos')
    r = cli(sys.executable, 'index', str(root / 'idx'), str(root / 'photos'), '--model-path', str(model))
    assert r.returncode == 0, r.stderr
    with serving(root / 'idx', model) as server:
        yield Site(root, model, photos, root / 'idx', server)


def _search_command(site, captions, images, k=K):
    """The ``search`` command's answer per query: {query: [(score '%.4f', file)]}."""
    args = ['search', str(site.index), *captions, '-k', str(k), '--model-path', str(site.model)]
    for p in images:
        args += ['--image', str(p)]
    r = cli(sys.executable, *args)
    assert r.returncode == 0, r.stderr
    blocks, current = {}, None
    for line in r.stdout.splitlines():
        if line.startswith('# '):
            current = blocks.setdefault(line[2:], [])
        else:
            score, name = line.split('\t')
            current.append((score, name))
    return blocks


def _as_lines(answer):
    return [('%.4f' % r['score'], r['file']) for r in answer['results']]


def _upload_raw(site, path, k=K):
    status, _, body = request('POST', site.url + '/api/search?k=%d' % k, Path(path).read_bytes(),
                              {'Content-Type': 'application/octet-stream'})
    return status, json.loads(body)


def _upload_form(site, path, k=K, field='image'):
    body, headers = multipart(field, Path(path).name, Path(path).read_bytes())
    status, _, out = request('POST', site.url + '/api/search?k=%d' % k, body, headers)
    return status, json.loads(out)


def test_answers_equal_the_search_command(site):
    by_photo = [site.photo('small-300x200.jpg'), site.photo('png-640x480.png')]
    expected = _search_command(site, CAPTIONS, by_photo)
    for caption in CAPTIONS:
        status, answer = get_json(site.url + '/api/search?' + urllib.parse.urlencode({'q': caption, 'k': K}))
        assert status == 200, answer
        assert _as_lines(answer) == expected[caption], caption
        assert answer['query'] == {'caption': caption, 'k': K}
        for r in answer['results']:
            assert r['thumbnail'] == '/api/thumbnail/%d' % r['id'] and r['image'] == '/api/image/%d' % r['id']
        scores = [r['score'] for r in answer['results']]
        assert scores == sorted(scores, reverse=True)
    raw_status, raw = _upload_raw(site, by_photo[0])
    form_status, form = _upload_form(site, by_photo[1])
    assert (raw_status, form_status) == (200, 200)
    assert _as_lines(raw) == expected[str(by_photo[0])]
    assert _as_lines(form) == expected[str(by_photo[1])]
    assert raw['results'][0]['file'] == str(by_photo[0]) and raw['results'][0]['score'] > 0.9999
    assert form['query'] == {'image': 'png-640x480.png', 'bytes': by_photo[1].stat().st_size, 'k': K}
    # k above the rows: every row, once.
    status, answer = get_json(site.url + '/api/search?q=dog&k=100')
    assert status == 200 and sorted(r['file'] for r in answer['results']) == sorted(map(str, site.photos))


def test_more_like_this_starts_with_the_image_itself(site):
    for p in site.photos[:3]:
        status, found = _upload_raw(site, p, k=1)
        image_id = found['results'][0]['id']
        status, answer = get_json(site.url + '/api/similar/%d?k=3' % image_id)
        assert status == 200
        assert answer['results'][0]['id'] == image_id and answer['results'][0]['score'] > 0.9999
        assert answer['query'] == {'id': image_id, 'k': 3} and len(answer['results']) == 3


def test_thumbnails_are_upright_made_once_and_cached(site):
    status, found = _upload_raw(site, site.photo('exif6-1200x800.jpg'), k=1)
    hit = found['results'][0]
    assert hit['file'].endswith('exif6-1200x800.jpg')
    before = get_json(site.url + '/healthz')[1]['renditions']
    status, headers, thumb = get(site.url + hit['thumbnail'])
    assert status == 200 and headers['content-type'] == 'image/jpeg'
    # Stored 1200 x 800 with EXIF orientation 6: upright it is a portrait.
    assert Image.open(io.BytesIO(thumb)).size == (213, 320)
    status, _, again = get(site.url + hit['thumbnail'])
    after = get_json(site.url + '/healthz')[1]['renditions']
    assert again == thumb
    assert after['made'] == before['made'] + 1 and after['cached'] == before['cached'] + 1
    status, headers, large = get(site.url + hit['image'])
    assert status == 200 and Image.open(io.BytesIO(large)).size == (800, 1200)


BAD_GETS = [
    ('/api/search?k=5', 400, 'no caption'),
    ('/api/search?q=&k=5', 400, 'the caption is empty'),
    ('/api/search?q=%20%09%20', 400, 'the caption is empty'),
    ('/api/search?q=' + 'a' * 1001, 400, '1001 characters long; at most 1000'),
    ('/api/search?q=dog&k=abc', 400, "k must be a positive integer (number of results), got 'abc'"),
    ('/api/search?q=dog&k=0', 400, 'k must be at least 1, got 0'),
    ('/api/search?q=dog&k=-3', 400, "got '-3'"),
    ('/api/search?q=dog&k=2.5', 400, "got '2.5'"),
    ('/api/search?q=dog&k=501', 400, "k=501 is above this server's limit of 500"),
    ('/api/search?q=dog&k=' + '9' * 30, 400, 'limit of 500'),
    ('/api/similar/1?k=x', 400, "got 'x'"),
    ('/api/similar/123456?k=3', 404, 'no indexed image has id 123456'),
    ('/api/thumbnail/123456', 404, 'no indexed image has id 123456'),
    ('/api/image/123456', 404, 'no indexed image has id 123456'),
    ('/api/image/abc', 404, "no indexed image has id 'abc'"),
    ('/no/such/page', 404, 'no such page or resource: /no/such/page'),
]


@pytest.mark.parametrize('path,status,message', BAD_GETS, ids=[p for p, _, _ in BAD_GETS])
def test_bad_queries_get_a_json_error_naming_the_fault(site, path, status, message):
    got, headers, body = get(site.url + path)
    assert got == status
    assert headers['content-type'] == 'application/json'
    answer = json.loads(body)
    assert message in answer['error'] and answer['status'] == status


def _bomb_png(width=20000, height=20000) -> bytes:
    """A valid 8-bit grey PNG of ``width`` x ``height`` zero pixels: 400 MB decoded, a few
    hundred KB stored."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    z = zlib.compressobj(9)
    row = b'\0' * (width + 1)  # filter byte 0, then the row
    data = b''.join(z.compress(row) for _ in range(height)) + z.flush()
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0))
            + chunk(b'IDAT', data) + chunk(b'IEND', b''))


def _peak_rss_kb(pid: int) -> int:
    text = Path('/proc/%d/status' % pid).read_text()
    return int(re.search(r'VmHWM:\s+(\d+) kB', text).group(1))


def test_bad_uploads_get_a_json_error_and_memory_stays_put(site):
    jpeg = site.photo('small-300x200.jpg').read_bytes()
    bomb = _bomb_png()
    assert len(bomb) < 1_000_000
    form_text = ('--b\r\nContent-Disposition: form-data; name="caption"\r\n\r\ndog\r\n--b--\r\n').encode()
    cases = [
        ('raw text', b'%PDF-1.4 this is not a photo at all', {}, 400, 'is not an image: no accepted image format recognised'),
        ('multipart text', *multipart('image', 'notes.txt', b'plain words, no pixels'), 400, 'is not an image'),
        ('empty body', b'', {}, 400, 'the upload is empty'),
        ('truncated jpeg', jpeg[:len(jpeg) // 3], {}, 400, 'cannot be decoded'),
        ('no image field', form_text, {'Content-Type': 'multipart/form-data; boundary=b'}, 400,
         'has no field "image" (fields sent: caption)'),
        ('over 20 MB raw', jpeg + b'\0' * (20 * 2 ** 20), {}, 413, 'larger than this server accepts (20971520 bytes'),
        ('over 20 MB form', *multipart('image', 'big.jpg', jpeg + b'\0' * (20 * 2 ** 20)), 413, 'larger than'),
        ('decompression bomb', bomb, {'Content-Type': 'image/png'}, 413,
         'declares too many pixels to decode: Image size (400000000 pixels)'),
        # Below Pillow's guard, above the package's 40 MP limit: refused from the header.
        ('81 MP png', _bomb_png(9000, 9000), {}, 413, 'PNG declares 9000 x 9000 pixels (81000000); '
                                                       'this server decodes at most '),
        ('eps', b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n', {}, 400, 'is not an image'),
    ]
    peak = _peak_rss_kb(site.server.proc.pid)
    for name, body, headers, status, message in cases:
        got, resp_headers, out = request('POST', site.url + '/api/search?k=3', body,
                                         dict({'Content-Type': 'application/octet-stream'}, **headers))
        assert got == status, (name, out)
        assert resp_headers['content-type'] == 'application/json', name
        assert message in json.loads(out)['error'], (name, out)
    # The 20 MB bodies were buffered once (their limit); the bomb's 400 MB never decoded.
    assert _peak_rss_kb(site.server.proc.pid) - peak < 120_000
    status, answer = _upload_raw(site, site.photo('small-300x200.jpg'), k=1)
    assert status == 200 and answer['results'][0]['score'] > 0.9999  # still serving


TRAVERSALS = [
    '/api/image/../../../../etc/passwd',
    '/api/image/..%2F..%2F..%2F..%2Fetc%2Fpasswd',
    '/api/image/%2e%2e%2f%2e%2e%2fetc%2fpasswd',
    '/api/thumbnail/..%252F..%252Fetc%252Fpasswd',
    '/api/image/%2Fetc%2Fpasswd',
    '/api/image/1%2F..%2F..%2Fetc%2Fpasswd',
    '/api/image/1.0',
    '/api/image/-1',
    '/api/image/0x1',
    '/api/image/1%00',
    '/api/image/%EF%BC%91',  # a fullwidth digit one: not an ASCII id
    '/api/similar/..%2F1',
    '/static/../../../../etc/passwd',
    '/static/..%2F..%2Fservice.py',
    '/static/app.js/../../app.py',
    '/static/%2e%2e/app.py',
]


def test_path_traversal_gets_404_and_no_file(site):
    host, port = site.url[len('http://'):].split(':')
    for path in TRAVERSALS:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request('GET', path)  # sent as written: no client-side normalisation
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        assert resp.status == 404, (path, body)
        assert json.loads(body)['status'] == 404, path
        assert b'root:' not in body and b'import ' not in body, path


def test_page_and_assets_come_from_the_package(site):
    for path, ctype in (('/', 'text/html'), ('/static/app.js', 'text/javascript'),
                        ('/static/style.css', 'text/css')):
        status, headers, body = get(site.url + path)
        assert status == 200 and headers['content-type'].startswith(ctype), path
        # Nothing is loaded from another origin: no absolute URLs at all.
        assert not re.search(rb'(https?:)?//[a-z0-9.-]+\.[a-z]{2,}', body), path
        assert "default-src 'self'" in headers['content-security-policy']
    page = get(site.url + '/')[2].decode()
    for element in ('id="caption"', 'id="k"', 'value="20"', 'id="upload"', 'id="results"', 'id="error"'):
        assert element in page


def test_concurrent_requests_all_answered(site):
    alone = {c: get_json(site.url + '/api/search?' + urllib.parse.urlencode({'q': c, 'k': K}))[1]
             for c in CAPTIONS}
    jobs = []
    for i in range(24):
        caption = CAPTIONS[i % len(CAPTIONS)]
        jobs.append(('caption', caption))
    jobs += [('photo', site.photos[i % len(site.photos)]) for i in range(8)]
    jobs += [('similar', i % 8) for i in range(8)]

    def run(job):
        kind, what = job
        if kind == 'caption':
            return job, get_json(site.url + '/api/search?' + urllib.parse.urlencode({'q': what, 'k': K}))
        if kind == 'photo':
            return job, _upload_raw(site, what, k=1)
        return job, get_json(site.url + '/api/similar/%d?k=2' % alone[CAPTIONS[0]]['results'][what % K]['id'])

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(run, jobs))
    for (kind, what), (status, answer) in answers:
        assert status == 200, (kind, what, answer)
        if kind == 'caption':
            # Batched with others, a caption's scores move by float rounding at most.
            assert [r['file'] for r in answer['results']] == [r['file'] for r in alone[what]['results']]
            for a, b in zip(answer['results'], alone[what]['results']):
                assert abs(a['score'] - b['score']) < 1e-5
        elif kind == 'photo':
            assert answer['results'][0]['file'] == str(what)


def test_photos_flag_indexes_the_folder_then_serves_it(site, tmp_path):
    index = tmp_path / 'snow-index'
    with serving(index, site.model, extra=['--photos', str(site.root / 'photos' / 'snow')],
                 log_dir=tmp_path) as server:
        health = get_json(server.url + '/healthz')[1]
        assert health['images'] == 3 and health['dim'] == 32
        status, answer = get_json(server.url + '/api/search?q=snow&k=10')
        assert status == 200
        assert sorted(r['file'] for r in answer['results']) == sorted(
            str(p) for p in site.photos if p.parent.name == 'snow')
        assert 'added 3' in server.log_text()


def test_fuse_on_answers_photo_queries_as_the_unfused_server(site, tmp_path):
    with serving(site.index, site.model, extra=['--fuse', 'on'], log_dir=tmp_path) as server:
        fused = Site(site.root, site.model, site.photos, site.index, server)
        assert 'runs fused for single photo queries' in server.log_text()
        for photo in site.photos[:3]:
            got, want = _upload_raw(fused, photo), _upload_raw(site, photo)
            assert got[0] == want[0] == 200
            assert [r['file'] for r in got[1]['results']][:2] == [r['file'] for r in want[1]['results']][:2]
            for a, b in zip(got[1]['results'], want[1]['results']):
                assert abs(a['score'] - b['score']) < 1e-3
    r = cli(sys.executable, 'serve', str(site.index), '--fuse', 'maybe')
    assert r.returncode == 2 and '--fuse' in r.stderr


def test_another_checkpoint_is_refused_naming_both(site, tmp_path):
    other = write_model(tmp_path / 'other')  # same layout, another file: another sha256
    with open(other, 'ab') as f:
        f.write(b'\0')  # torch ignores trailing bytes; the sha256 does not
    r = cli(sys.executable, 'serve', str(site.index), '--model-path', str(other), '--port', '1')
    assert r.returncode == 2
    assert 'sha256' in r.stderr and str(other) in r.stderr


def test_an_index_run_beside_the_server_shows_up_without_a_restart(site, tmp_path):
    # Last in this file: it adds a photo to the shared index.
    from tests.support.photos import write_photo

    extra = write_photo(site.root / 'photos' / 'later' / 'added-700x500.jpg', 700, 500, seed=77)
    r = cli(sys.executable, 'index', str(site.index), str(site.root / 'photos'), '--model-path', str(site.model))
    assert r.returncode == 0, r.stderr
    import time
    deadline = time.monotonic() + 30
    while get_json(site.url + '/healthz')[1]['images'] != len(site.photos) + 1:
        assert time.monotonic() < deadline, 'the server did not pick up the new commit'
        time.sleep(0.5)
    status, answer = _upload_raw(site, extra, k=1)
    assert status == 200 and answer['results'][0]['file'] == str(extra)
