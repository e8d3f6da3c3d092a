"""Loaded by every Python process the jina 3 tests start (this folder is on PYTHONPATH):
an audit hook that refuses name lookups and connections beyond this machine.

jina 3 phones home (telemetry, public-IP lookups, registry queries) and swallows the
errors, so a refusal alone would go unnoticed: each one is also appended to the file named
by ``VSE_NETGUARD_LOG``, which the test session checks at its end.
"""
import os
import sys

_LOCAL_HOSTS = {None, '', 'localhost', '127.0.0.1', '::1', '0.0.0.0', '::', 'ip6-localhost'}


def _is_local(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode('ascii', 'replace')
    return host in _LOCAL_HOSTS or (isinstance(host, str) and host.startswith('127.'))


def _refuse(what: str) -> None:
    log = os.environ.get('VSE_NETGUARD_LOG')
    if log:
        with open(log, 'a') as f:
            f.write('pid %d (%s): %s\n' % (os.getpid(), ' '.join(sys.argv)[:200], what))
    raise OSError('netguard: %s refused, nothing may leave 127.0.0.1 in these tests' % what)


def _hook(event, args):
    if event == 'socket.getaddrinfo':
        if not _is_local(args[0]):
            _refuse('name lookup of %r' % (args[0],))
    elif event in ('socket.connect', 'socket.sendto'):
        sock, address = args[0], args[1]
        if isinstance(address, tuple) and not _is_local(address[0]):
            _refuse('%s to %r' % (event, address))


if os.environ.get('VSE_NETGUARD', '') == '1':
    sys.addaudithook(_hook)
