"""vseimageencoder.images.sources: the rules for files and URLs a client names, against real files,
FIFOs, symlinks and a real HTTP server on 127.0.0.1 (no jina). The same rules through real
jina 3 Deployments: tests/jina3/test_deployments.py."""
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from vseimageencoder.images.sources import SourcePolicy, SourceRefused, address_rule

ROOT = Path(__file__).resolve().parents[2]


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        path, _, query = self.path.partition('?')
        if path == '/data':
            body = b'x' * 1000
            self.send_response(200)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path == '/big':  # no Content-Length: the cap must hold while reading
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'y' * 5000)
        elif path == '/redirect':
            self.send_response(302)
            self.send_header('Location', urllib.parse.parse_qs(query)['to'][0])
            self.end_headers()
        elif path == '/loop':
            self.send_response(301)
            self.send_header('Location', '/loop')
            self.end_headers()
        elif path in ('/trickle-body', '/trickle-headers'):
            try:
                if path == '/trickle-body':
                    self.send_response(200)
                    self.send_header('Content-Length', '100000')
                    self.end_headers()
                else:
                    self.wfile.write(b'HTTP/1.0 200 OK\r\n')
                for _ in range(100):
                    self.wfile.write(b'X-a: b\r\n' if path == '/trickle-headers' else b'z')
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
        else:
            self.send_error(404)


@pytest.fixture(scope='module')
def web():
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield 'http://127.0.0.1:%d' % server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize('addr, rule', [
    ('127.0.0.1', 'loopback'), ('127.9.9.9', 'loopback'), ('::1', 'loopback'),
    ('::ffff:127.0.0.1', 'loopback'), ('10.0.0.1', 'private'), ('172.16.5.4', 'private'),
    ('192.168.0.1', 'private'), ('fd12::1', 'private'), ('169.254.169.254', 'cloud-metadata'),
    ('fd00:ec2::254', 'cloud-metadata'), ('100.100.100.200', 'cloud-metadata'),
    ('169.254.3.4', 'link-local'), ('fe80::1', 'link-local'), ('100.64.0.1', 'non-public'),
    ('224.0.0.1', 'non-public'), ('8.8.8.8', None), ('2606:4700:4700::1111', None),
])
def test_address_rules(addr, rule):
    assert address_rule(addr) == rule


@pytest.fixture
def tree(tmp_path):
    root, outside = tmp_path / 'root', tmp_path / 'outside'
    root.mkdir()
    outside.mkdir()
    (root / 'a.jpg').write_bytes(b'inside')
    (outside / 'secret.jpg').write_bytes(b'secret')
    (root / 'in.jpg').symlink_to(root / 'a.jpg')
    (root / 'out.jpg').symlink_to(outside / 'secret.jpg')
    (root / 'dangling.jpg').symlink_to(outside / 'missing.jpg')
    os.mkfifo(str(root / 'fifo.jpg'))
    return root, outside


def test_files_inside_the_root(tree):
    root, _ = tree
    policy = SourcePolicy(file_root=str(root))
    for name in ('a.jpg', str(root / 'a.jpg'), 'in.jpg', 'sub/../a.jpg'):
        with policy.open_file(name) as f:
            assert f.read() == b'inside'
    with pytest.raises(FileNotFoundError, match='no such file: nothing.jpg'):
        policy.open_file('nothing.jpg')


def test_outside_the_root_one_message_existing_or_not(tree):
    root, outside = tree
    policy = SourcePolicy(file_root=str(root))
    words = set()
    for name in (str(outside / 'secret.jpg'), str(outside / 'missing.jpg'), 'out.jpg', 'dangling.jpg',
                 '../outside/secret.jpg', '../outside/missing.jpg', '/etc/passwd', '/no/such'):
        with pytest.raises(SourceRefused) as e:
            policy.open_file(name)
        assert e.value.rule == 'file_root'
        assert 'secret' not in str(e.value).replace(name, '')  # a symlink's target stays unsaid
        words.add(str(e.value).replace(name, '<path>'))
    assert len(words) == 1, words


def test_fifo_refused_at_once(tree):
    root, _ = tree
    t0 = time.monotonic()
    with pytest.raises(SourceRefused, match='a FIFO') as e:
        SourcePolicy(file_root=str(root)).open_file('fifo.jpg')
    assert e.value.rule == 'regular-file' and time.monotonic() - t0 < 5
    with pytest.raises(SourceRefused, match=r'not a regular file \(a directory\)'):
        SourcePolicy(file_root=str(root.parent)).open_file('root')


def test_no_root_reads_anywhere(tree):
    _, outside = tree
    with SourcePolicy(file_root=None).open_file(str(outside / 'secret.jpg')) as f:
        assert f.read() == b'secret'


def test_fetching_off_by_default_and_loopback_refused(web):
    with pytest.raises(SourceRefused) as e:
        SourcePolicy().fetch(web + '/data')
    assert e.value.rule == 'fetch_urls'
    for url in (web + '/data', web.replace('127.0.0.1', 'localhost') + '/data'):
        with pytest.raises(SourceRefused) as e:
            SourcePolicy(fetch_urls=True).fetch(url)
        assert e.value.rule == 'loopback'


def test_allowed_fetch_redirect_and_refused_hops(web):
    listed = SourcePolicy(fetch_urls=True, allow_private_urls=['127.0.0.1/32'])
    assert listed.fetch(web + '/data') == b'x' * 1000
    assert listed.fetch(web + '/redirect?to=%2Fdata') == b'x' * 1000
    assert SourcePolicy(fetch_urls=True, allow_private_urls=True).fetch(web + '/data') == b'x' * 1000
    for target, rule in (('http://127.0.0.2/', 'loopback'), ('http://10.1.2.3/', 'private'),
                         ('http://169.254.169.254/', 'cloud-metadata'), ('ftp://127.0.0.1/', 'scheme')):
        with pytest.raises(SourceRefused) as e:
            listed.fetch(web + '/redirect?to=' + urllib.parse.quote(target))
        assert e.value.rule == rule
    with pytest.raises(SourceRefused) as e:
        listed.fetch(web + '/loop')
    assert e.value.rule == 'redirects'


def test_size_cap(web):
    small = SourcePolicy(fetch_urls=True, allow_private_urls=True, max_url_bytes=500)
    for path in ('/data', '/big'):  # declared, and found while reading
        with pytest.raises(SourceRefused) as e:
            small.fetch(web + path)
        assert e.value.rule == 'max_url_bytes'


@pytest.mark.parametrize('path', ['/trickle-body', '/trickle-headers'])
def test_one_deadline_whatever_the_server_trickles(web, path):
    policy = SourcePolicy(fetch_urls=True, allow_private_urls=True, url_timeout=1.0)
    deadline = policy.deadline()
    t0 = time.monotonic()
    for _ in range(2):  # the second fetch finds the request's deadline already spent
        with pytest.raises(SourceRefused) as e:
            policy.fetch(web + path, deadline)
        assert e.value.rule == 'url_timeout'
    assert time.monotonic() - t0 < 4  # a byte every 0.1 s would keep per-read timeouts alive for 10 s


def test_bad_settings_named(tmp_path):
    with pytest.raises(NotADirectoryError, match='file_root'):
        SourcePolicy(file_root=str(tmp_path / 'nope'))
    with pytest.raises(ValueError, match='allow_private_urls'):
        SourcePolicy(allow_private_urls=['not a network'])
    with pytest.raises(ValueError, match='url_timeout'):
        SourcePolicy(url_timeout=0)


def _hung_resolver_skip_reason():
    if os.geteuid() != 0:
        return 'needs root: a private mount namespace and a DNS socket on a loopback port 53'
    if shutil.which('unshare') is None or shutil.which('mount') is None:
        return 'needs unshare and mount (util-linux)'
    return None


@pytest.mark.skipif(_hung_resolver_skip_reason() is not None, reason=str(_hung_resolver_skip_reason()))
def test_a_hung_resolver_costs_the_deadline_not_the_resolver_timeout(tmp_path):
    """A resolver that never answers: getaddrinfo alone would wait its own 30 s; the fetch
    gives up at the request's deadline. Real glibc resolution in a child process whose
    /etc/resolv.conf (bind-mounted in a private mount namespace) names a DNS 'server' on a
    loopback address that reads queries and never replies, so no query leaves this machine."""
    import socket
    # Port 53 of some loopback address (all of 127/8 is this machine): the other
    # environment's run of this test may hold one at the same time.
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for last in range(1, 60):
        host = '127.0.53.%d' % last
        try:
            dns.bind((host, 53))
            break
        except OSError as e:
            taken = e
    else:
        dns.close()
        pytest.skip('port 53 of 127.0.53.1-59 is taken (%s): no place for the silent resolver' % taken)
    queries = []

    def swallow():
        while True:
            try:
                queries.append(dns.recvfrom(4096)[0])
            except OSError:
                return
    threading.Thread(target=swallow, daemon=True).start()
    (tmp_path / 'resolv.conf').write_text('nameserver %s\noptions timeout:30 attempts:1\n' % host)
    (tmp_path / 'nsswitch.conf').write_text('hosts: files dns\n')
    child = ("import time\n"
             "from vseimageencoder.images.sources import SourcePolicy, SourceRefused\n"
             "t = time.monotonic()\n"
             "try:\n"
             "    policy = SourcePolicy(fetch_urls=True, url_timeout=1.5)\n"
             "    policy.fetch('http://photos.vse-test.invalid/a.jpg')\n"
             "    print('fetched')\n"
             "except SourceRefused as e:\n"
             "    print(e.rule, round(time.monotonic() - t, 2))\n")
    script = ('mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/nsswitch.conf && '
              'exec "$3" -c "$4"')
    # The netguard audit hook (tests/support/netguard) refuses lookups of names beyond this
    # machine; in this child every lookup goes to the silent resolver on loopback.
    env = {k: v for k, v in os.environ.items() if k != 'VSE_NETGUARD'}
    try:
        out = subprocess.run(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh',
                              str(tmp_path / 'resolv.conf'), str(tmp_path / 'nsswitch.conf'),
                              sys.executable, child],
                             capture_output=True, text=True, timeout=60, cwd=str(ROOT), env=env)
    finally:
        dns.close()
    if out.returncode != 0 and 'mount' in out.stderr and 'fetched' not in out.stdout:
        pytest.skip('no private mount namespace here: %s' % out.stderr.strip()[:200])
    assert out.returncode == 0, out.stderr
    rule, seconds = out.stdout.split()
    assert rule == 'url_timeout'
    assert float(seconds) < 5, 'the fetch waited %s s for a resolver that never answers' % seconds
    assert queries, 'the child never asked the silent resolver: the test did not test a hung lookup'
