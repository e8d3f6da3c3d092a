"""`jina pod --uses config.yml --port-in P --port-out Q` as a real process, served by a gateway."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tests.support.fresh_process import run_in_fresh_process
from tests.support.processes import stop_process_group
from tests.support.vsepp_release import reference_embed

pytestmark = pytest.mark.jina09


def _free_ports(n):
    import socket
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _send_through_gateway(port_in, port_out, port_expose, items, kind='blob', request_size=2):
    """Runs in a fresh process: a gateway wired to the pod's ports, and a client sending
    ``items`` as image blobs (results keyed by document id, ``%016x`` of 1, 2, ...) or, with
    ``kind='text'``, as captions (keyed by caption)."""
    from jina import Document
    from jina.clients import Client
    from jina.helper import ArgNamespace
    from jina.parsers import set_client_cli_parser, set_gateway_parser
    from jina.peapods import Pea

    gw = set_gateway_parser().parse_args([
        '--port-expose', str(port_expose),
        '--host-out', '127.0.0.1', '--port-out', str(port_in),
        '--host-in', '127.0.0.1', '--port-in', str(port_out)])
    got = {}

    def on_done(resp):
        for d in resp.docs:
            got[d.text if kind == 'text' else d.id] = d.embedding.copy()

    if kind == 'text':
        docs = [Document(text=c) for c in items]
    else:
        docs = [Document(id='%016x' % (i + 1), blob=img) for i, img in enumerate(items)]
    with Pea(gw):
        client = Client(ArgNamespace.kwargs2namespace(
            dict(host='localhost', port_expose=port_expose), set_client_cli_parser()))
        client.search(docs, on_done=on_done, request_size=request_size)
    return got


def test_jina_pod_cli_serves_requests(tmp_path, small_release, repo_root):
    ckpt, backbone, fc = small_release
    (tmp_path / 'pretrained').mkdir()
    os.link(str(ckpt), str(tmp_path / 'pretrained' / 'model_best.pth.tar'))
    port_in, port_out, port_ctrl, port_expose = _free_ports(4)
    cmd = [sys.executable, '-m', 'tests.support.jina09_offline', 'pod', '--uses', str(repo_root / 'config.yml'),
           '--port-in', str(port_in), '--port-out', str(port_out), '--port-ctrl', str(port_ctrl)]
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, start_new_session=True)
    lines, ready = [], threading.Event()

    def pump():
        for line in proc.stdout:
            lines.append(line)
            if 'ready and listening' in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.time() + 120
        while not ready.is_set() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert ready.is_set(), 'pod did not become ready:\n' + ''.join(lines[-40:])
        images = np.random.RandomState(8).randn(5, 3, 64, 64).astype(np.float32)
        got = run_in_fresh_process(_send_through_gateway, port_in, port_out, port_expose, images,
                                   timeout=180)
    finally:
        stop_process_group(proc)
    expected = reference_embed(backbone, fc, images)
    assert sorted(got) == ['%016x' % (i + 1) for i in range(5)]
    for i in range(5):
        np.testing.assert_allclose(got['%016x' % (i + 1)], expected[i], atol=2e-5)
    assert 'VSE++ image tower ready' in ''.join(lines)
