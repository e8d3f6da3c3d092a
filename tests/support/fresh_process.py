"""Run a test body in a freshly spawned interpreter.

jina 0.9.33 forks its pods. Once a process has run torch work (any op that used its
intra-op thread pool), a forked child that uses torch again hangs, since OpenMP is not
fork-safe. The pytest process runs torch in the unit tests, so every Flow or pod client is
started from a spawned child that has done no torch work yet.
"""
import multiprocessing as mp
import os
import pickle
import queue
import signal
import tempfile
import traceback

from tests.support.processes import descendants


def _child(q, call_file):
    try:
        # The call comes through a file, not the spawn pipe: a parent writing a large call
        # into that pipe blocks for ever if the child dies before reading it all (CPython
        # keeps the pipe's read end open in the parent until the write is done).
        with open(call_file, 'rb') as f:
            fn, args, kwargs = pickle.load(f)
        # A spawned child inherits 'spawn' as its default start method; jina's peas are
        # built for fork (the way users run them), so restore it.
        mp.set_start_method('fork', force=True)
        from tests.support.jina09_offline import disable_phone_home
        disable_phone_home()
        q.put((True, fn(*args, **kwargs)))
    except BaseException:  # report everything, including assertion failures, to the parent
        q.put((False, traceback.format_exc()))


def _kill_tree(p):
    # jina forks its peas (gateway, pods) from the child; killing only the child would leave
    # them running, holding ports and the caller's output pipes.
    for pid in [p.pid] + descendants(p.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_in_fresh_process(fn, *args, timeout=300, **kwargs):
    """``fn(*args, **kwargs)`` in a spawned process; its return value, or its traceback raised."""
    ctx = mp.get_context('spawn')
    q = ctx.Queue()
    fd, call_file = tempfile.mkstemp(prefix='fresh-process-', suffix='.pickle')
    try:
        with os.fdopen(fd, 'wb') as f:
            pickle.dump((fn, args, kwargs), f)
        p = ctx.Process(target=_child, args=(q, call_file))
        p.start()
        try:
            ok, payload = q.get(timeout=timeout)
        except queue.Empty:
            _kill_tree(p)
            p.join(10)
            raise TimeoutError('%s did not finish within %d s in its own process' % (fn.__name__, timeout))
        p.join(60)
        if p.is_alive():
            _kill_tree(p)
    finally:
        os.unlink(call_file)
    if not ok:
        raise AssertionError('in a fresh process:\n' + payload)
    return payload
