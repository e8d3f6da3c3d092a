"""The serve package's batching worker (no model, no web server)."""
import threading

import pytest

from vseimageencoder.serve.batcher import Batcher
from vseimageencoder.serve.errors import Unavailable


def test_batcher_takes_what_is_waiting_at_once_and_keeps_order():
    seen, started, gate = [], threading.Event(), threading.Event()

    def run(items):
        started.set()
        gate.wait(10)  # the first batch waits until the others have queued
        seen.append(list(items))
        return [x * 10 if x != 3 else KeyError('three') for x in items]

    b = Batcher(run, max_batch=4)
    futures = [b.submit(0)]
    assert started.wait(10)
    futures += [b.submit(i) for i in range(1, 7)]
    gate.set()
    assert [f.result(10) for f in futures if not f.exception(10)] == [0, 10, 20, 40, 50, 60]
    assert isinstance(futures[3].exception(), KeyError)  # only its own submitter sees it
    assert seen[0] == [0] and seen[1] == [1, 2, 3, 4] and seen[2] == [5, 6]
    b.close()


def test_batcher_failure_reaches_every_item_and_the_worker_goes_on():
    calls = []

    def run(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError('tower failed')
        return items

    b = Batcher(run)
    with pytest.raises(RuntimeError, match='tower failed'):
        b(1)
    assert b(2) == 2
    b.close()
    with pytest.raises(Unavailable):
        b.submit(3)


def test_batcher_queue_is_bounded():
    started, gate = threading.Event(), threading.Event()
    b = Batcher(lambda items: (started.set(), gate.wait(10), items)[2], max_batch=1, max_queue=2)
    first = b.submit(0)
    assert started.wait(10)  # taken by the worker, which now waits
    b.submit(1), b.submit(2)
    with pytest.raises(Unavailable, match='2 requests waiting'):
        b.submit(3)
    gate.set()
    assert first.result(10) == 0
    b.close()
