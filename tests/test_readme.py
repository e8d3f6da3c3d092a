"""The README and docs/ as written: every command block says whether it runs, and
every block marked to run does, as shown, in order, in the environment running the tests,
against random-weight checkpoints, with nothing leaving 127.0.0.1. A page whose blocks use
jina 0.9 (JINA09_PAGES) runs in .venv only (marked jina09); the others in both environments.
The jina 3 blocks: tests/jina3/test_readme_jina3.py."""
import sys
from pathlib import Path

import pytest

from tests.support.readme_blocks import (CODE_LANGS, MARKED_PAGES, REPO, RUN_KINDS, all_blocks, make_workspace,
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
#: Pages whose `run: python` / `run: shell` blocks use jina 0.9.33 (its Flow, the executors).
JINA09_PAGES = {'docs/jina09.md'}


def test_pages_that_need_jina09_are_pages_that_run():
    assert JINA09_PAGES <= set(PAGES), JINA09_PAGES - set(PAGES)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp('readme') / 'root')


@pytest.mark.parametrize('page', [pytest.param(p, marks=pytest.mark.jina09) if p in JINA09_PAGES else p
                                  for p in PAGES])
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
