"""How many threads read images and how many run the tower's arithmetic (no jina, no torch at
import).
"""
import os
from contextlib import contextmanager
from typing import NamedTuple, Optional

#: Lanes beyond this add memory (a batch of activations each) for no gain: past a few
#: cores the tower's own threads use the cores well enough.
MAX_LANES = 8


class ThreadBudget(NamedTuple):
    #: intra-op threads of each forward pass (``torch.set_num_threads``)
    torch_threads: int
    #: threads reading images (lanes: each also runs the tower); 0: the calling thread reads
    reader_threads: int
    #: whether each reader thread runs the tower on what it read (lanes)
    readers_run_tower: bool


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers and ``taskset``
    narrow), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def thread_budget(cores: Optional[int] = None, readers: Optional[int] = None,
                  readers_run_tower: bool = True) -> ThreadBudget:
    """Split ``cores`` between reader threads and the tower's intra-op threads.

    :param cores: cores to budget (None: :func:`cpu_cores`); at least 1.
    :param readers: reader threads asked for; None for the default (lanes: one per core, at
        most :data:`MAX_LANES`; feeding: half the cores, at least 1); 0 to read on the
        calling thread.
    :param readers_run_tower: lanes (True) or readers feeding a tower on the calling thread.
    :return: a :class:`ThreadBudget`. Lanes: ``cores // readers`` torch threads each (at least
        1). Feeding: ``cores - readers`` torch threads (at least 1). Reading on the calling
        thread: every core for the tower.
    :raises ValueError: naming ``cores`` below 1 or ``readers`` below 0.

    The tower's OpenMP threads meet at a barrier after every layer: a reader taking one of
    their cores leaves the others spinning there, so readers and tower threads together
    must not outnumber the cores. Lanes never wait on one another and keep every core busy
    whatever the split between decoding and the tower; readers feeding a tower keep every
    core busy only when the work happens to match the split.
    """
    if cores is None:
        cores = cpu_cores()
    if int(cores) != cores or cores < 1:
        raise ValueError('cores must be a whole number of at least 1, got %r' % (cores,))
    if readers is not None and (int(readers) != readers or readers < 0):
        raise ValueError('readers must be 0 (read on the calling thread) or more, got %r' % (readers,))
    cores = int(cores)
    if readers == 0:
        return ThreadBudget(cores, 0, False)
    if readers_run_tower:
        lanes = min(cores, MAX_LANES) if readers is None else int(readers)
        return ThreadBudget(max(1, cores // lanes), lanes, True)
    feeding = max(1, cores // 2) if readers is None else int(readers)
    return ThreadBudget(max(1, cores - feeding), feeding, False)


@contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch intra-op threads, restoring the previous count after.

    The count is process-wide: threads started inside the block (lanes) pick it up at their
    first parallel region.
    """
    import torch

    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
