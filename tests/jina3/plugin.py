"""The jina 3 test run's plugin: ``python -m pytest -p tests.jina3.plugin tests/unit tests/jina3``
(``.venv-jina3``; see .ci/run).

- Before jina is imported anywhere: the offline environment (tests/jina3/offline.py), a
  private HOME, spawn start method, and the netguard audit hook in this process too.
- At the end: anything the netguard refused, in any process, fails the run.
- From tests/unit it keeps the tests of the jina-free core and leaves out those of the
  jina 0.9.33 front end (they name jina, its executors or vseimageencoder.jina09.executor, in the
  module body, the test or a fixture it uses), which the 0.9 run (.venv) covers.
"""
import importlib.util
import inspect
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.jina3.offline import NETGUARD_DIR, environment

_JINA09 = re.compile(r'\bjina\b|vseimageencoder\.executor|\bVSE(Image|Text)Encoder\b')
_UNIT = Path(__file__).resolve().parent.parent / 'unit'
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
    from tests.jina3.offline import disable_phone_home
    disable_phone_home()


def pytest_configure(config):
    setup_once()


def _module_level_jina09(path: Path) -> bool:
    return any(_JINA09.search(line) for line in path.read_text(encoding='utf-8').splitlines()
               if line and not line[0].isspace() and not line.startswith(('#', '"', "'")))


def pytest_ignore_collect(collection_path, config):
    p = Path(collection_path)
    if p.suffix == '.py' and _UNIT in p.parents and p.name.startswith('test_'):
        return True if _module_level_jina09(p) else None
    return None


def _source(fn) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return ''


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        fn = getattr(item, 'function', None)
        if fn is None or _UNIT not in Path(str(item.fspath)).parents:
            keep.append(item)
            continue
        sources = [_source(fn)]
        for defs in getattr(item, '_fixtureinfo').name2fixturedefs.values():
            sources.extend(_source(d.func) for d in defs if str(_UNIT) in str(getattr(d, 'baseid', '')) or
                           _UNIT in Path(inspect.getsourcefile(d.func) or '/').parents)
        (drop if any(_JINA09.search(s) for s in sources) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


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
