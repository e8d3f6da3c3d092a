"""The prefetching reader (vseimageencoder.pipeline.prefetch): input order kept, unreadable
items reported in place, a bounded lead, other errors raised where they happen."""
import threading
import time

import numpy as np
import pytest

from vseimageencoder.images import read
from vseimageencoder.pipeline.prefetch import PrefetchReader, read_in_order


def test_reader_keeps_order_skips_and_bounds_what_is_ahead():
    ahead, n = 5, 60
    consumed = [0]
    worst_lead = [0]
    lock = threading.Lock()
    rng = np.random.RandomState(0)
    delays = rng.rand(n) * 0.004

    def load(i):
        with lock:
            worst_lead[0] = max(worst_lead[0], i - consumed[0])
        time.sleep(delays[i])  # later items often finish first
        if i % 7 == 3:
            raise read.ImageReadError('cannot read image %d' % i)
        return i * 10

    got = []
    with PrefetchReader(range(n), load, readers=4, ahead=ahead, skip=(read.ImageReadError,)) as r:
        for i, x in r:
            got.append((i, x if not isinstance(x, Exception) else str(x)))
            time.sleep(0.002)  # a slow consumer: readers must wait, not run ahead
            with lock:
                consumed[0] = i + 1
    assert [i for i, _ in got] == list(range(n))
    assert all(x == ('cannot read image %d' % i if i % 7 == 3 else i * 10) for i, x in got)
    assert 1 < worst_lead[0] <= ahead, worst_lead  # it read ahead, never more than allowed
    assert not [t for t in threading.enumerate() if t.name.startswith('vse-reader')]


def test_reader_raises_other_errors_in_place_and_stops():
    started = []

    def load(i):
        started.append(i)
        if i == 4:
            raise MemoryError('boom at 4')
        return i

    seen = []
    with pytest.raises(MemoryError, match='boom at 4'):
        with PrefetchReader(range(1000), load, readers=3, ahead=4) as r:
            for i, _ in r:
                seen.append(i)
    assert seen == [0, 1, 2, 3]
    assert max(started) < 4 + 4 + 3  # nothing read far past the failure
    assert not [t for t in threading.enumerate() if t.name.startswith('vse-reader')]


def test_inline_reader_is_the_same_sequence():
    def load(i):
        if i == 2:
            raise read.ImageReadError('bad 2')
        return -i

    with read_in_order(range(5), load, 0, 1, (read.ImageReadError,)) as r:
        inline = [(i, str(x)) for i, x in r]
    with read_in_order(range(5), load, 2, 3, (read.ImageReadError,)) as r:
        threaded = [(i, str(x)) for i, x in r]
    assert inline == threaded == [(0, '0'), (1, '-1'), (2, 'bad 2'), (3, '-3'), (4, '-4')]
    with pytest.raises(ValueError, match='readers'):
        PrefetchReader([1], load, readers=0, ahead=1)
