"""The fresh-process runner the Flow and container tests stand on: it must fail, not hang."""
import importlib
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tests.support.fresh_process import run_in_fresh_process


def _sleep_with_grandchild(pid_file):
    # Stands in for jina, which forks gateway and pod processes below the child.
    grandchild = subprocess.Popen(['sleep', '300'])
    with open(pid_file, 'w') as f:
        f.write(str(grandchild.pid))
    time.sleep(300)


def _alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def test_timeout_kills_the_whole_tree(tmp_path):
    pid_file = tmp_path / 'grandchild.pid'
    with pytest.raises(TimeoutError, match='_sleep_with_grandchild did not finish within 15 s'):
        run_in_fresh_process(_sleep_with_grandchild, str(pid_file), timeout=15)
    grandchild = int(pid_file.read_text())
    deadline = time.time() + 10
    while _alive(grandchild) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild), 'the child\'s own child outlived the timeout'


def test_child_that_cannot_load_the_call_fails_fast_with_large_arguments(tmp_path, monkeypatch):
    # Importable here, not in the child: the child dies before it has read its (large) call.
    (tmp_path / 'parent_only.py').write_text(
        'import os\n'
        'if os.getpid() != %d:\n'
        '    raise ImportError("parent_only is not importable in children")\n'
        'def total(x):\n'
        '    return float(x.sum())\n' % os.getpid())
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module('parent_only')
    big = np.ones(4 * 1024 * 1024, dtype=np.float32)  # 16 MB, far beyond a pipe's buffer
    outcome = {}

    def call():
        try:
            run_in_fresh_process(mod.total, big, timeout=90)
        except BaseException as ex:  # noqa: B902 - recorded and asserted on below
            outcome['error'] = ex

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), 'run_in_fresh_process hung on a child that died before reading its call'
    assert isinstance(outcome.get('error'), AssertionError)
    assert 'parent_only is not importable in children' in str(outcome['error'])


def test_result_comes_back():
    assert run_in_fresh_process(os.getpid, timeout=60) != os.getpid()
    assert run_in_fresh_process(sorted, [3, 1, 2], timeout=60) == [1, 2, 3]
    assert sys.modules[__name__]  # the module stays importable for the child
