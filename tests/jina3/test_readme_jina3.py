"""The jina 3 blocks of the docs as written (`<!-- run: python-jina3 -->`, see
tests/support/readme_blocks.py): run in .venv-jina3, in order, in one interpreter, against
random-weight checkpoints, with nothing leaving 127.0.0.1."""
import sys
from pathlib import Path

import pytest

from tests.support.readme_blocks import make_workspace, run_page, to_run

pytestmark = pytest.mark.jina3

PAGES = sorted(to_run('python-jina3').keys() | to_run('shell-jina3').keys())


def test_jina3_page_has_runnable_blocks():
    assert 'docs/jina3.md' in PAGES


@pytest.mark.parametrize('page', PAGES)
def test_jina3_blocks_run_as_written(page, tmp_path):
    work = make_workspace(tmp_path / 'root')
    blocks = to_run('python-jina3').get(page, []) + to_run('shell-jina3').get(page, [])
    results, guard = run_page(blocks, work, Path(sys.prefix))
    for r in results:
        assert r.returncode == 0, '%s failed (exit %d):\n%s\n%s' % (
            r.args if isinstance(r.args, str) else page, r.returncode, r.stdout[-3000:], r.stderr[-5000:])
    assert guard == '', 'the blocks of %s reached beyond 127.0.0.1:\n%s' % (page, guard)
