"""Embedding image files in lanes: each lane thread reads a batch and runs the tower on it with
its own share of the cores; results come out in input order.
"""
import threading
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

#: Batches in flight per lane: with 2, a lane that finishes its batch before the one ahead of
#: it is written takes the next instead of waiting for the writer.
AHEAD_PER_LANE = 2


def chunk_size(n: int, batch_size: int, lanes: int) -> int:
    """Images per lane batch: at most ``batch_size``, and as many batches as makes every lane
    get the same number (8 images on 2 lanes: 4 each, not 8 on one; 24 in batches of 8 on
    2 lanes: 4 batches of 6, not 3 of 8 with one lane idle for the last)."""
    lanes, batch_size = max(1, lanes), max(1, batch_size)
    if n <= 0:
        return batch_size
    batches = -(-n // batch_size)
    batches = -(-batches // lanes) * lanes
    return max(1, -(-n // batches))


def embed_in_lanes(model, paths: Sequence, load: Callable, write: Callable, batch_size: int,
                   lanes: int, torch_threads: int, skip: Tuple[type, ...] = (),
                   on_unreadable: Optional[Callable] = None,
                   on_progress: Optional[Callable] = None) -> Tuple[int, int]:
    """Embed ``paths`` on ``lanes`` threads, each running ``model`` with ``torch_threads``
    intra-op threads, and hand the rows to ``write(rows, positions)`` in input order.

    :param model: float32 ``(B, 3, 224, 224)`` tensor -> ``(B, D)`` tensor on the CPU.
    :param load: path -> float32 ``(3, 224, 224)`` array; the ``skip`` exceptions it raises
        mark a file as unreadable (reported to ``on_unreadable(position, error)``, in order),
        any other error stops the run and is raised here.
    :param on_progress: ``(done, skipped)`` after each batch is written.
    :return: ``(done, skipped)``.

    Separate reader threads would compete with the tower's OpenMP threads for the cores and
    stall it at its barriers; a lane does both halves of its own batch, so the cores stay
    busy whatever the ratio of decoding to tower time. Lane ``k`` takes batches ``k``,
    ``k + lanes``, ...; the calling thread hands each to ``write`` in turn. Decoding and the
    forward pass release the GIL, so lanes are threads and the tower is loaded once.
    """
    import torch

    from vseimageencoder.images.checks import CHANNELS

    from vseimageencoder.images.transform import CROP
    from vseimageencoder.pipeline.prefetch import read_in_order
    from vseimageencoder.pipeline.thread_budget import torch_threads as threads_set

    paths = list(paths)
    n = len(paths)
    size = chunk_size(n, batch_size, lanes)
    chunks = [range(i, min(n, i + size)) for i in range(0, n, size)]
    local = threading.local()

    def run(chunk):
        if not getattr(local, 'threads_set', False):
            # OpenMP's thread count is per calling thread: a new thread starts with the
            # machine's, and its first forward pass would start a team of that size on top
            # of the other lanes' (checked in tests/pipeline/test_thread_budget.py).
            torch.set_num_threads(torch_threads)
            local.threads_set = True
        batch = np.empty((len(chunk), CHANNELS, CROP, CROP), np.float32)
        positions, errors = [], []
        for i in chunk:
            try:
                batch[len(positions)] = load(paths[i])
            except skip as e:
                errors.append((i, e))
                continue
            positions.append(i)
        rows = None
        if positions:
            rows = np.ascontiguousarray(model(torch.from_numpy(batch[:len(positions)])).numpy(),
                                        np.float32)
        return rows, positions, errors

    done = skipped = 0
    with threads_set(torch_threads), read_in_order(chunks, run, lanes, AHEAD_PER_LANE * lanes) as results:
        for chunk, (rows, positions, errors) in results:
            for pos, err in errors:
                skipped += 1
                if on_unreadable is not None:
                    on_unreadable(pos, err)
            if positions:
                write(rows, positions)
                done += len(positions)
            if on_progress is not None:
                on_progress(done, skipped)
    return done, skipped
