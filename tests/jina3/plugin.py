"""The jina 3 environment's plugin, for the whole run there (``.venv-jina3/bin/python -m pytest
tests``; tests/conftest.py loads it where jina 3 is installed, ``-p tests.jina3.plugin`` loads
it as well).

- Before jina is imported anywhere: the offline environment (tests/support/jina3_offline.py),
  a private HOME, spawn start method, and the netguard audit hook in this process too.
- At the end: anything the netguard refused, in any process, fails the run.

Which tests run here is decided by their markers (tests/conftest.py), not here.
"""
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support.jina3_offline import NETGUARD_DIR, environment

_state = {}


def setup_once() -> None:
    if _state:
        return
    root = Path(tempfile.mkdtemp(prefix='vse-jina3-tests-'))
    _state['root'] = root
    (root / 'home').mkdir()
    _state['guard_log'] = root / 'netguard.log'
    os.environ.update(environment(root / 'home', _state['guard_log']))
    spec = importlib.util.spec_from_file_location('vse_netguard', NETGUARD_DIR / 'sitecustomize.py')
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # adds the audit hook here
    from tests.support.jina3_offline import disable_phone_home
    disable_phone_home()


def pytest_configure(config):
    setup_once()


def pytest_sessionfinish(session, exitstatus):
    log = _state.get('guard_log')
    if log and log.exists() and log.read_text().strip():
        session.config._vse_netguard = log.read_text()
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config):
    # The private HOME and the netguard log (already read at session end) go with the run;
    # left behind, one per run, they pile up in /tmp on a machine that runs CI again and again.
    root = _state.get('root')
    if root is not None:
        shutil.rmtree(str(root), ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    refused = getattr(config, '_vse_netguard', None)
    if refused:
        terminalreporter.section('traffic beyond 127.0.0.1 (refused by netguard)', red=True)
        terminalreporter.write(refused)
