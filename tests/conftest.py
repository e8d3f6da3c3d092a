import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.jina_offline import disable_phone_home  # noqa: E402


def _jina09_installed() -> bool:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version('jina').startswith('0.9.')
    except PackageNotFoundError:
        return False


# Before any test can start a Flow: nothing may leave 127.0.0.1. Only where jina 0.9 is
# installed: the jina 3 run (.venv-jina3) switches jina 3 off in tests/jina3/conftest.py.
if _jina09_installed():
    disable_phone_home()


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope='session')
def small_release(tmp_path_factory):
    """A resnet18 VSE++ checkpoint in the release layout (legacy format); (path, backbone, fc)."""
    from tests.vsepp_release import write_release_checkpoint
    path = tmp_path_factory.mktemp('r18') / 'model_best.pth.tar'
    backbone, fc = write_release_checkpoint(path, 'resnet18', embed_size=1024, seed=3)
    return path, backbone, fc
