"""What every test run shares: the environment's front ends, the selection by marker, and the
fixtures of the core.

The suite runs in two environments (scripts/test.sh): `.venv` with jina 0.9.33 and
`.venv-jina3` with jina 3. A test that needs one of them says so with a marker (pytest.ini):

- ``@pytest.mark.jina09`` (or a module's ``pytestmark``): needs jina 0.9.33;
- ``@pytest.mark.jina3``: needs jina 3.

Where that jina is not installed, the marked tests are deselected (pytest counts them under
"deselected", neither passed nor skipped). Unmarked tests are jina-free and run in both.
tests/jina09/ and tests/jina3/ hold only tests of their front end, every module marked: where
that front end is absent they are not even collected, since their modules may import it.

In the jina 3 environment the plugin tests/jina3/plugin.py (the private HOME, jina's telemetry
off, the netguard audit hook) is loaded for the whole run, before any test module.
"""
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _jina_version() -> str:
    try:
        return version('jina')
    except PackageNotFoundError:
        return ''


#: marker -> whether this environment has what the tests so marked need
FRONT_ENDS = {'jina09': _jina_version().startswith('0.9.'), 'jina3': _jina_version().startswith('3.')}

if FRONT_ENDS['jina3']:
    # Before jina 3 is imported anywhere (-p tests.jina3.plugin, as before, loads it as well).
    pytest_plugins = ['tests.jina3.plugin']

from tests.support.jina09_offline import disable_phone_home  # noqa: E402

# Before any test can start a Flow: nothing may leave 127.0.0.1. Only where jina 0.9 is
# installed: in the jina 3 environment tests/jina3/plugin.py switches jina 3 off.
if FRONT_ENDS['jina09']:
    disable_phone_home()


def pytest_ignore_collect(collection_path, config):
    """tests/jina09/ and tests/jina3/ where their jina is not installed (see the docstring)."""
    p = Path(str(collection_path))
    if p.parent == REPO / 'tests' and p.name in FRONT_ENDS and not FRONT_ENDS[p.name]:
        return True
    return None


def pytest_collection_modifyitems(config, items):
    absent = [marker for marker, installed in FRONT_ENDS.items() if not installed]
    keep, drop = [], []
    for item in items:
        (drop if any(item.get_closest_marker(m) is not None for m in absent) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope='session')
def small_release(tmp_path_factory):
    """A resnet18 VSE++ checkpoint in the release layout (legacy format); (path, backbone, fc)."""
    from tests.support.vsepp_release import write_release_checkpoint
    path = tmp_path_factory.mktemp('r18') / 'model_best.pth.tar'
    backbone, fc = write_release_checkpoint(path, 'resnet18', embed_size=1024, seed=3)
    return path, backbone, fc
