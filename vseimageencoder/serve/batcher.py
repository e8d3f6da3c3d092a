"""One worker thread that runs the towers and the index for every request, in batches."""
import logging
import queue
import threading
from concurrent.futures import Future
from typing import Callable, List, Sequence

from vseimageencoder.serve.errors import Unavailable

logger = logging.getLogger(__name__)

_STOP = object()


class Batcher:
    """Hand items to ``run_batch`` on a single worker thread, many at a time.

    Running the towers on every request thread would make torch's intra-op threads fight
    over the cores; one worker taking everything waiting turns concurrent queries into one
    tower pass and one scan of the index. Nothing waits for company: a lone item runs as
    soon as the worker is free.

    :param run_batch: called with a list of items (at most ``max_batch``, in arrival
        order); returns one result per item, in order. An item's result may be an
        exception instance: it is raised to that item's submitter alone. If ``run_batch``
        raises, every item of that batch gets the exception.
    :param max_batch: the most items one call gets.
    :param max_queue: the most items waiting; :meth:`submit` beyond it raises
        :class:`~vseimageencoder.serve.errors.Unavailable` instead of queuing without bound.
    """

    def __init__(self, run_batch: Callable[[List], Sequence], max_batch: int = 64,
                 max_queue: int = 1024, name: str = 'vse-serve-worker'):
        if max_batch < 1:
            raise ValueError('max_batch must be at least 1, got %r' % (max_batch,))
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._queue: 'queue.Queue' = queue.Queue(max_queue)
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, item) -> Future:
        """Queue ``item``; the returned future gets its result (or its exception)."""
        if self._closed:
            raise Unavailable('the server is shutting down')
        fut: Future = Future()
        try:
            self._queue.put_nowait((item, fut))
        except queue.Full:
            raise Unavailable('the server has %d requests waiting; retry shortly'
                              % self._queue.maxsize) from None
        return fut

    def __call__(self, item):
        """Submit ``item`` and wait for its result."""
        return self.submit(item).result()

    def _work(self):
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._queue.put(_STOP)  # seen again after this batch
                    break
                batch.append(nxt)
            items = [item for item, _ in batch]
            try:
                results = self._run_batch(items)
                if len(results) != len(items):
                    raise RuntimeError('run_batch returned %d results for %d items'
                                       % (len(results), len(items)))
            except BaseException as e:  # handed to every waiting request
                logger.exception('a batch of %d request(s) failed', len(items))
                results = [e] * len(items)
            for (_, fut), result in zip(batch, results):
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

    def close(self, timeout: float = 30.0):
        """Finish what is queued, then stop the worker."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join(timeout)
