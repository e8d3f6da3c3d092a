"""``vseimageencoder serve`` end to end in a few seconds: one index, one server, which answers
as the search command does and refuses bad input, with the starlette and uvicorn of the
environment it runs in. Written for the jina 3 environment (Python 3.10+, the starlette and
uvicorn jina 3 installs) when the full API suite (tests/serve/test_app.py) ran in the 0.9 one
only; both are jina-free and run in both environments now."""
import json
import sys
import urllib.parse

from tests.support.serving_web import (CAPTIONS, cli, get, get_json, multipart, request, serving,
                               write_model, write_photos)


def test_serve_answers_as_search_does_under_jina3(tmp_path):
    import starlette
    import uvicorn

    model = write_model(tmp_path / 'model')
    photos = write_photos(tmp_path / 'photos')
    r = cli(sys.executable, 'index', str(tmp_path / 'idx'), str(tmp_path / 'photos'), '--model-path', str(model))
    assert r.returncode == 0, r.stderr
    r = cli(sys.executable, 'search', str(tmp_path / 'idx'), CAPTIONS[0], '-k', '4',
            '--model-path', str(model))
    assert r.returncode == 0, r.stderr
    expected = [tuple(line.split('\t')) for line in r.stdout.splitlines()]
    with serving(tmp_path / 'idx', model, log_dir=tmp_path) as server:
        status, answer = get_json(server.url + '/api/search?' + urllib.parse.urlencode({'q': CAPTIONS[0], 'k': 4}))
        assert status == 200
        assert [('%.4f' % h['score'], h['file']) for h in answer['results']] == expected
        status, _, body = request('POST', server.url + '/api/search?k=1', photos[0].read_bytes())
        assert status == 200 and json.loads(body)['results'][0]['file'] == str(photos[0])
        form, headers = multipart('image', photos[1].name, photos[1].read_bytes())
        status, _, body = request('POST', server.url + '/api/search?k=1', form, headers)
        assert status == 200 and json.loads(body)['results'][0]['file'] == str(photos[1])
        status, _, body = get(server.url + '/api/search?q=&k=4')
        assert status == 400 and 'the caption is empty' in json.loads(body)['error']
        status, _, body = get(server.url + '/api/image/..%2F..%2Fetc%2Fpasswd')
        assert status == 404 and b'root:' not in body
    # The versions this ran with (the ranges in requirements-jina3.txt hold them).
    assert starlette.__version__ and uvicorn.__version__
