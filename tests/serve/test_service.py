"""The serve package's request checks and its batching worker (no model, no web server)."""
import threading

import pytest

from vseimageencoder.serve.batcher import Batcher
from vseimageencoder.serve.errors import BadRequest, NotFound, Unavailable
from vseimageencoder.serve.service import check_caption, parse_id, parse_k


@pytest.mark.parametrize('raw,k', [(None, 20), ('1', 1), ('7', 7), (' 12 ', 12), ('500', 500)])
def test_k_accepted(raw, k):
    assert parse_k(raw) == k


@pytest.mark.parametrize('raw,message', [
    ('0', 'k must be at least 1, got 0'), ('-1', "got '-1'"), ('', "got ''"), ('abc', "got 'abc'"),
    ('2.5', "got '2.5'"), ('1e3', "got '1e3'"), ('\u0661', "got '\u0661'"),  # an Arabic-Indic one
    ('501', "k=501 is above this server's limit of 500"), ('9' * 40, 'limit of 500'),
])
def test_k_refused_naming_the_value(raw, message):
    with pytest.raises(BadRequest) as e:
        parse_k(raw)
    assert message in e.value.message and e.value.status == 400


def test_caption_checks():
    assert check_caption('  a dog  ') == 'a dog'
    for raw, message in ((None, 'no caption'), ('', 'empty'), (' \t\n', 'empty'),
                         ('x' * 1001, '1001 characters long; at most 1000')):
        with pytest.raises(BadRequest) as e:
            check_caption(raw)
        assert message in e.value.message


@pytest.mark.parametrize('raw', ['-1', '1.0', '0x1', '..', '', ' 1', '\uff11', '9' * 19])
def test_ids_that_are_not_plain_integers_are_not_found(raw):
    with pytest.raises(NotFound):
        parse_id(raw)
    assert parse_id('42') == 42


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
