"""How many threads read images and how many run the tower's arithmetic (no jina, no torch
at import).

On a few cores the budget decides the speed of encoding photos. The tower's convolutions
run on OpenMP threads that meet at a barrier after every layer: if a reader thread takes
one of their cores, the others wait at the barrier, spinning, and the tower runs at the
pace of its slowest thread while burning the cores it is waiting on. Readers and tower
threads together must therefore not outnumber the cores.

Two layouts are budgeted here:

- **lanes** (``readers_run_tower=True``, what ``encode`` and ``index`` use): each reader
  thread reads and transforms a whole batch and then runs the tower on it with its own
  share of the cores (one torch thread each when there are as many lanes as cores). A lane
  is never waiting on another lane, so whatever the split between decoding and the tower,
  every core stays busy until the input runs out.
- **readers feeding the tower** (``readers_run_tower=False``): reader threads transform
  images ahead of a tower running on the calling thread; the tower gets the cores the
  readers leave. It only keeps every core busy when decoding and the tower happen to need
  the cores in the ratio the split gave them.

``readers == 0`` means reading on the calling thread, one image after the other, and the
tower using every core between reads.
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
