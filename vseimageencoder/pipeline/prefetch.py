"""Reading and transforming image files ahead of the tower, on threads, in input order."""
import logging
import threading
import time
from typing import Callable, Iterator, Optional, Sequence, Tuple, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar('T')


class PrefetchReader:
    """Apply ``load`` to each of ``paths`` on ``readers`` threads, at most ``ahead`` items in
    flight, and iterate over ``(path, result)`` in input order.

    ``result`` is what ``load`` returned, or the exception of one of the ``skip`` types it
    raised (the caller names and skips those). Any other exception is raised from the
    iteration at that item's place. Memory holds at most ``ahead`` results plus one
    item in progress per reader. Use as a context manager: leaving it normally stops the
    readers after the item each is working on and waits for them, so no reader outlives the
    run. Leaving it on an error or KeyboardInterrupt waits at most :attr:`ABANDON_AFTER`
    seconds: a reader blocked in I/O (a stalled network mount, a device) must not keep
    Ctrl-C from ending the run, so readers still busy then are left behind (daemon threads,
    which never keep the process alive) and named in a warning.

    Threads suffice: decoding, resizing and the forward pass release the GIL.
    """

    #: Seconds an interrupted reader pool waits for busy readers before leaving them.
    ABANDON_AFTER = 0.2

    def __init__(self, paths: Sequence, load: Callable, readers: int, ahead: int,
                 skip: Tuple[type, ...] = ()):
        if readers < 1:
            raise ValueError('readers must be at least 1, got %r' % (readers,))
        if ahead < 1:
            raise ValueError('ahead must be at least 1, got %r' % (ahead,))
        self._paths, self._load, self._skip = list(paths), load, tuple(skip)
        self._ahead = ahead
        self._cond = threading.Condition()
        self._results = {}
        self._claimed = 0   # next index a reader may take
        self._consumed = 0  # next index the consumer waits for
        self._stopped = False
        self._threads = [threading.Thread(target=self._work, name='vse-reader-%d' % i, daemon=True)
                         for i in range(min(readers, max(1, len(self._paths))))]
        for t in self._threads:
            t.start()

    def _work(self):
        n = len(self._paths)
        while True:
            with self._cond:
                while not self._stopped and self._claimed < n and self._claimed >= self._consumed + self._ahead:
                    self._cond.wait()
                if self._stopped or self._claimed >= n:
                    return
                i = self._claimed
                self._claimed += 1
            try:
                result = (True, self._load(self._paths[i]))
            except self._skip as e:
                result = (True, e)
            except BaseException as e:  # handed to the consumer, raised there
                result = (False, e)
            with self._cond:
                self._results[i] = result
                self._cond.notify_all()

    def __iter__(self) -> Iterator[Tuple[object, object]]:
        for i, path in enumerate(self._paths):
            with self._cond:
                while i not in self._results:
                    self._cond.wait()
                ok, result = self._results.pop(i)
                self._consumed = i + 1
                self._cond.notify_all()
            if not ok:
                raise result
            yield path, result

    def close(self, timeout: Optional[float] = None) -> bool:
        """Stop the readers after their current item and wait for them: without end, or at
        most ``timeout`` seconds in all. Returns whether every reader has stopped."""
        with self._cond:
            self._stopped = True
            self._results.clear()
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        busy = [t.name for t in self._threads if t.is_alive()]
        if busy:
            logger.warning('left %d reader thread(s) still blocked reading (%s); they end with '
                           'the process', len(busy), ', '.join(busy))
        return not busy

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.close(None if exc_type is None else self.ABANDON_AFTER)
        return False


def read_in_order(paths: Sequence, load: Callable, readers: int, ahead: int,
                  skip: Tuple[type, ...] = ()):
    """A context manager iterating ``(path, result)`` in order: a :class:`PrefetchReader`, or
    for ``readers == 0`` a plain loop on the calling thread (no prefetching)."""
    if readers == 0:
        return _Inline(paths, load, skip)
    return PrefetchReader(paths, load, readers, ahead, skip)


class _Inline:
    def __init__(self, paths, load, skip):
        self._paths, self._load, self._skip = paths, load, tuple(skip)

    def __iter__(self):
        for p in self._paths:
            try:
                result = self._load(p)
            except self._skip as e:
                result = e
            yield p, result

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
