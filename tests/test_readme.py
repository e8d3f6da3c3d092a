"""The README and docs/ as written (issue 19): every command block says whether it runs, and
every block marked to run does, as shown, in order, in .venv, against random-weight
checkpoints, with nothing leaving 127.0.0.1. The jina 3 blocks: tests/jina3/test_readme_jina3.py."""
import sys
from pathlib import Path

import pytest

from tests.readme_blocks import (CODE_LANGS, MARKED_PAGES, REPO, RUN_KINDS, all_blocks, make_workspace,
                                 run_page, to_run)

VENV = Path(sys.prefix)


def test_every_command_block_says_whether_it_runs():
    unmarked, bad = [], []
    for b in all_blocks():
        if b.mark is None:
            if b.page in MARKED_PAGES and b.lang in CODE_LANGS:
                unmarked.append(b.where)
        elif b.mark == 'run' and b.detail not in RUN_KINDS:
            bad.append('%s: unknown run kind %r' % (b.where, b.detail))
        elif b.mark == 'not run' and len(b.detail) < 8:
            bad.append('%s: "not run" without a reason' % b.where)
    assert not unmarked, 'blocks without <!-- run: ... --> or <!-- not run: REASON -->: %s' % unmarked
    assert not bad, bad


def test_the_readme_has_runnable_blocks_and_links_that_resolve():
    readme = (REPO / 'README.md').read_text()
    assert len(readme.splitlines()) < 250
    assert to_run('python').get('README.md'), 'the README Python example is not run'
    import re
    for target in re.findall(r'\]\(((?:docs/)?[\w./-]+\.(?:md|png))(?:#[\w-]+)?\)', readme):
        if target.endswith('.png'):
            continue  # the screenshot is made by scripts/serve_screenshot.py
        assert (REPO / target).is_file(), 'README links to %s, which does not exist' % target


PAGES = sorted(to_run('python').keys() | to_run('shell').keys())


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp('readme') / 'root')


@pytest.mark.parametrize('page', PAGES)
def test_blocks_run_as_written(page, workspace, tmp_path):
    blocks = to_run('python').get(page, []) + to_run('shell').get(page, [])
    work = tmp_path / 'root'
    work.mkdir()
    for entry in workspace.iterdir():  # a fresh copy of the root per page: pages do not share outputs
        (work / entry.name).symlink_to(entry)
    results, guard = run_page(blocks, work, VENV)
    for r in results:
        assert r.returncode == 0, '%s failed (exit %d):\n%s\n%s' % (
            r.args if isinstance(r.args, str) else page, r.returncode, r.stdout[-3000:], r.stderr[-5000:])
    assert guard == '', 'the blocks of %s reached beyond 127.0.0.1:\n%s' % (page, guard)
