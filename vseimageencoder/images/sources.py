"""Where a served encoder may read an image from: local paths under a root, and URLs fetched
only when allowed and only from public addresses (no jina, no model).
"""
import http.client
import ipaddress
import os
import socket
import ssl
import stat
import threading
import time
import urllib.parse
from typing import Optional, Tuple

from vseimageencoder.files.regular import NotARegularFileError, kind_of, open_regular

#: Cloud metadata services (AWS/GCP/Azure/OpenStack/DigitalOcean 169.254.169.254, AWS ECS
#: task metadata, AWS IPv6 IMDS, Alibaba, Oracle's second address). Most are also link-local
#: or private; named apart so the refusal says what the address is.
CLOUD_METADATA = frozenset(ipaddress.ip_address(a) for a in (
    '169.254.169.254', '169.254.170.2', 'fd00:ec2::254', '100.100.100.200', '192.0.0.192'))
#: Redirect statuses followed (each hop checked like the first URL).
REDIRECTS = (301, 302, 303, 307, 308)


class SourceRefused(ValueError):
    """A path or URL a policy rule does not allow; ``rule`` names the rule (``file_root``,
    ``regular-file``, ``fetch_urls``, ``scheme``, ``loopback``, ``private``, ``link-local``,
    ``cloud-metadata``, ``non-public``, ``redirects``, ``url_timeout``, ``max_url_bytes``)."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule


def address_rule(addr) -> Optional[str]:
    """The rule that refuses fetching from ``addr`` (an IPv4/IPv6 address or its text), or
    None for a public address. IPv4-mapped IPv6 addresses are judged as the IPv4 inside."""
    ip = ipaddress.ip_address(addr) if isinstance(addr, str) else addr
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip.ipv4_mapped or ip.sixtofour or ip
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            return 'link-local'
    if ip in CLOUD_METADATA:
        return 'cloud-metadata'
    if ip.is_loopback:
        return 'loopback'
    if ip.is_link_local:
        return 'link-local'
    if ip.is_private:
        return 'private'
    if not ip.is_global or ip.is_multicast:  # shared (CGNAT), reserved, unspecified, multicast
        return 'non-public'
    return None


def _allowed_networks(value):
    """``allow_private_urls`` as (all allowed, listed networks)."""
    if isinstance(value, bool) or value is None:
        return bool(value), ()
    if isinstance(value, str):
        value = [value]
    try:
        return False, tuple(ipaddress.ip_network(str(v), strict=False) for v in value)
    except (TypeError, ValueError) as e:
        raise ValueError('allow_private_urls must be True/False or a list of networks such as '
                         "'10.1.2.0/24', got %r (%s)" % (value, e)) from None


def _shown(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:80] + '...(%d characters)' % len(text)


class SourcePolicy:
    """The rules for reading an image named by a client.

    A server that reads whatever path or URL a client names lets that client probe the
    server's disk and make the server call its own network (loopback admin ports, the
    private network, the cloud metadata service). Hence:

    - **paths** (plain or ``file://``) are read only if, with every symlink resolved, they
      lie under ``file_root``; a relative path is taken relative to ``file_root``. A path
      outside the root gets the same refusal whether or not it exists. Only regular files
      are read (a FIFO, device or socket is refused unopened, so it cannot block).
    - **http(s) URLs** are fetched only with ``fetch_urls=True``. Every host is resolved and
      each of its addresses checked before connecting; the connection goes to the checked
      address, so a second DNS answer cannot swap it; redirects are followed here, hop by
      hop, each hop checked the same way.
    - one **deadline** covers all fetches of a request (:meth:`deadline`): a slow server
      cannot hold a worker longer than ``url_timeout`` in total, whatever it sends.

    Every refusal is a :class:`SourceRefused` whose ``rule`` names the rule.

    :param file_root: the folder local paths must lie in (resolved once, here), or None for
        any path the process can read (unsafe when clients are not trusted).
    :param fetch_urls: whether ``http(s)`` URLs are fetched at all.
    :param allow_private_urls: ``True``: also fetch from loopback, private, link-local,
        cloud-metadata and other non-public addresses (only for trusted clients on a trusted
        network); or a list of networks (``'10.1.2.0/24'``, ``'127.0.0.1/32'``) whose
        addresses are fetched from although not public, e.g. one internal image server;
        every other non-public address stays refused.
    :param url_timeout: seconds for all fetches of one request together.
    :param max_url_bytes: the largest body one URL may deliver.
    :param max_redirects: redirects followed per URL.
    """

    def __init__(self, file_root: Optional[str] = '.', fetch_urls: bool = False,
                 allow_private_urls: bool = False, url_timeout: float = 10.0,
                 max_url_bytes: int = 64 << 20, max_redirects: int = 5):
        self.file_root = None if file_root is None else os.path.realpath(os.fspath(file_root))
        if self.file_root is not None and not os.path.isdir(self.file_root):
            raise NotADirectoryError('file_root %r is not a folder' % os.fspath(file_root))
        self.fetch_urls = bool(fetch_urls)
        self.allow_private_urls, self.allowed_networks = _allowed_networks(allow_private_urls)
        self.url_timeout = float(url_timeout)
        if not self.url_timeout > 0:
            raise ValueError('url_timeout must be a positive number of seconds, got %r' % url_timeout)
        self.max_url_bytes = int(max_url_bytes)
        self.max_redirects = int(max_redirects)

    def describe(self) -> str:
        files = 'any path (unsafe when served)' if self.file_root is None else 'under %s' % self.file_root
        urls = ('off' if not self.fetch_urls else
                'on, private addresses too (unsafe when served)' if self.allow_private_urls else
                'on, public addresses and %s' % ', '.join(map(str, self.allowed_networks))
                if self.allowed_networks else 'on, public addresses only')
        return 'local files: %s; URL fetching: %s' % (files, urls)

    def deadline(self) -> float:
        """The ``time.monotonic()`` by which every fetch of a request started now must end."""
        return time.monotonic() + self.url_timeout

    # ------------------------------------------------------------------ local files

    def open_file(self, path: str):
        """``path`` opened for binary reading (a file object; the caller closes it), if the
        rules allow it: under ``file_root`` once symlinks are resolved, and a regular file.

        SourceRefused (rule ``file_root``) for a path outside the root, with one message for
        existing and missing paths; rule ``regular-file`` for a FIFO, device, socket or folder
        inside it; FileNotFoundError / PermissionError for a missing or unreadable file
        inside it (or anywhere, with no root).
        """
        given = os.fspath(path)
        if self.file_root is None:
            real = os.path.realpath(given)
        else:
            real = os.path.realpath(os.path.join(self.file_root, given))
            if os.path.commonpath([real, self.file_root]) != self.file_root:
                raise SourceRefused('file_root', 'path %s is outside the folder this server reads '
                                    'images from (file_root)' % _shown(given))
        try:
            mode = os.stat(real).st_mode
            if not stat.S_ISREG(mode):
                raise SourceRefused('regular-file', 'path %s is not a regular file (%s); only regular '
                                    'files are read' % (_shown(given), kind_of(mode)))
            return open_regular(real)  # never blocks, and checks the opened descriptor again
        except NotARegularFileError:  # swapped for something else since the look
            raise SourceRefused('regular-file', 'path %s is not a regular file; only regular files '
                                'are read' % _shown(given)) from None
        except FileNotFoundError:
            raise FileNotFoundError('no such file: %s' % _shown(given)) from None
        except PermissionError:
            raise PermissionError('permission denied: %s' % _shown(given)) from None

    # ------------------------------------------------------------------ URLs

    def fetch(self, url: str, deadline: Optional[float] = None) -> bytes:
        """The body of an ``http(s)`` URL, following up to ``max_redirects`` redirects, each
        hop checked; all of it by ``deadline`` (default: ``url_timeout`` from now).

        SourceRefused naming the rule for anything the rules refuse, for a body over
        ``max_url_bytes`` and for a fetch that runs past the deadline; OSError (an HTTP
        status, a refused connection) otherwise.
        """
        if not self.fetch_urls:
            raise SourceRefused('fetch_urls', 'this server does not fetch URLs (fetch_urls=False); '
                                'send the image bytes instead')
        deadline = self.deadline() if deadline is None else deadline
        try:
            for _ in range(self.max_redirects + 1):
                status, location, body = self._get(url, deadline)
                if status in REDIRECTS:
                    if not location:
                        raise OSError('HTTP %d redirect without a Location' % status)
                    url = urllib.parse.urljoin(url, location)
                    continue
                if status != 200:
                    raise OSError('HTTP status %d' % status)
                return body
        except _DeadlinePassed:
            raise SourceRefused('url_timeout', "the URL did not deliver within the request's "
                                'url_timeout=%g s (one deadline for all URLs of a request)'
                                % self.url_timeout) from None
        raise SourceRefused('redirects', 'more than %d redirects (max_redirects)' % self.max_redirects)

    def _connect_address(self, host: str, port: int, deadline: float) -> str:
        """An address of ``host`` every rule allows (all of its addresses must be allowed: a
        name that resolves to a public and a private address is refused)."""
        try:
            addrs = [str(ipaddress.ip_address(host))]  # a literal: nothing to resolve
        except ValueError:
            addrs = [info[4][0] for info in _resolve(host, port, deadline)]
        if not self.allow_private_urls:
            for addr in addrs:
                rule = address_rule(addr.split('%', 1)[0])
                if rule is not None and not self._listed(addr):
                    raise SourceRefused(rule, 'host %s has a %s address; this server fetches only '
                                        'from public addresses%s (allow_private_urls)'
                                        % (_shown(host, 100), rule, ''.join(
                                            ' and ' + str(n) for n in self.allowed_networks)))
        return addrs[0]

    def _listed(self, addr: str) -> bool:
        ip = ipaddress.ip_address(addr.split('%', 1)[0])
        return any(ip.version == net.version and ip in net for net in self.allowed_networks)

    def _get(self, url: str, deadline: float) -> Tuple[int, Optional[str], bytes]:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ('http', 'https'):
            raise SourceRefused('scheme', 'URL scheme %r is not fetched (http or https)' % scheme)
        try:
            host, port = parts.hostname, parts.port
        except ValueError as e:
            raise ValueError('malformed URL: %s' % e) from None
        if not host:
            raise ValueError('URL without a host')
        port = port or (443 if scheme == 'https' else 80)
        addr = self._connect_address(host, port, deadline)
        conn = (_PinnedHTTPS if scheme == 'https' else _PinnedHTTP)(host, port, addr, _remaining(deadline))
        # A server that trickles bytes renews every socket timeout; this timer cuts the
        # connection at the deadline whatever is blocked on it.
        watchdog = threading.Timer(_remaining(deadline), conn.abort)
        watchdog.daemon = True
        watchdog.start()
        try:
            target = urllib.parse.urlunsplit(('', '', parts.path or '/', parts.query, ''))
            conn.request('GET', target, headers={'User-Agent': 'vseimageencoder', 'Accept': 'image/*'})
            conn.live.settimeout(_remaining(deadline))
            resp = conn.getresponse()
            if resp.status in REDIRECTS:
                return resp.status, resp.getheader('Location'), b''
            if resp.status != 200:
                return resp.status, None, b''
            declared = resp.getheader('Content-Length')
            if declared and declared.isdigit() and int(declared) > self.max_url_bytes:
                raise SourceRefused('max_url_bytes', 'the URL declares %s bytes, more than '
                                    'max_url_bytes=%d' % (declared, self.max_url_bytes))
            chunks, size = [], 0
            while True:
                conn.live.settimeout(_remaining(deadline))
                chunk = resp.read1(1 << 16)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_url_bytes:
                    raise SourceRefused('max_url_bytes', 'larger than max_url_bytes=%d' % self.max_url_bytes)
                chunks.append(chunk)
            if conn.aborted:  # the watchdog's shutdown reads as an early end of the body
                raise _DeadlinePassed()
            return resp.status, None, b''.join(chunks)
        except (socket.timeout, TimeoutError):
            raise _DeadlinePassed() from None
        except (OSError, http.client.HTTPException) as e:
            if conn.aborted or time.monotonic() >= deadline:
                raise _DeadlinePassed() from None
            if isinstance(e, ssl.SSLError):
                raise OSError('TLS error: %s' % (e.reason or e.__class__.__name__)) from None
            if isinstance(e, SourceRefused):
                raise
            raise OSError('HTTP error: %s' % (str(e) or e.__class__.__name__)) from None
        finally:
            watchdog.cancel()
            conn.close()


class _DeadlinePassed(Exception):
    pass


def _resolve(host: str, port: int, deadline: float):
    """getaddrinfo within the deadline (it has no timeout of its own: it runs in a thread
    that is left behind if the resolver hangs)."""
    box = {}

    def lookup():
        try:
            box['infos'] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            box['error'] = e
    t = threading.Thread(target=lookup, daemon=True, name='vse-resolve')
    t.start()
    t.join(_remaining(deadline))
    if t.is_alive():
        raise _DeadlinePassed()
    if 'error' in box:
        e = box['error']
        raise OSError('cannot resolve host %s: %s' % (_shown(host, 100), getattr(e, 'strerror', None) or e)) from None
    return box['infos']


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _DeadlinePassed()
    return left


class _Abortable:
    aborted = False
    #: The connected socket, kept here: HTTPConnection drops its ``sock`` once a response
    #: that closes the connection (HTTP/1.0, ``Connection: close``) has started.
    live = None

    def abort(self):
        """Cut the connection from another thread: a blocked read returns or fails at once."""
        self.aborted = True
        sock = self.live
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _PinnedHTTP(_Abortable, http.client.HTTPConnection):
    """An HTTP connection to a checked address, with ``host`` in the Host header."""

    def __init__(self, host, port, addr, timeout):
        super().__init__(host, port, timeout=timeout)
        self._addr = addr

    def connect(self):
        self.sock = self.live = socket.create_connection((self._addr, self.port), self.timeout)


class _PinnedHTTPS(_Abortable, http.client.HTTPSConnection):
    """An HTTPS connection to a checked address; the certificate is checked against ``host``."""

    def __init__(self, host, port, addr, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._addr = addr

    def connect(self):
        sock = socket.create_connection((self._addr, self.port), self.timeout)
        self.live = sock
        self.sock = self.live = self._context.wrap_socket(sock, server_hostname=self.host)
