"""jina 0.9.33's `jina` command asks api.jina.ai for the latest version before every command;
`python -m vseimageencoder.jina09.cli`, which the pod image's entrypoint runs, is the same
command line without that. An audit hook in the child (tests/support/netguard)
records every name lookup or connection beyond 127.0.0.1."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.jina09

REPO = Path(__file__).resolve().parent.parent.parent
PING = ['ping', '127.0.0.1', '1', '--retries', '1', '--timeout', '100']  # nothing listens: fails fast


def _attempts(cmd, tmp_path):
    log = tmp_path / 'netguard.log'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / 'tests' / 'support' / 'netguard'), str(REPO)]),
               VSE_NETGUARD='1', VSE_NETGUARD_LOG=str(log))
    r = subprocess.run(cmd + PING, cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert 'ping tcp://127.0.0.1:1' in r.stdout, r.stdout[-2000:]  # the command itself ran
    return log.read_text() if log.exists() else ''


def test_plain_jina_phones_home(tmp_path):
    # What the package works around; if jina stopped doing it, the test below proves nothing.
    jina = Path(sys.executable).parent / 'jina'
    if not jina.exists():
        pytest.skip('no jina 0.9.33 command in this environment')
    assert "name lookup of 'api.jina.ai'" in _attempts([str(jina)], tmp_path)


def test_package_jina_command_stays_local(tmp_path):
    assert _attempts([sys.executable, '-m', 'vseimageencoder.jina09.cli'], tmp_path) == ''
