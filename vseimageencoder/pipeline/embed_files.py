"""Embedding many image files in batches (read -> tower -> writer), shared by ``encode``,
``index`` and ``evaluate``; memory is bounded by the batches in flight.
"""
import functools
import logging
from typing import Callable, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: ``embed_files`` (so ``encode``, ``index`` and ``evaluate``) fuses a CPU tower in reduced
#: precision (:mod:`vseimageencoder.model.onednn_graph`) by default when it embeds at least this many
#: images, so that the fusion's start-up is repaid.
FUSE_MIN_IMAGES = 256

#: ``write(rows, positions)``: float32 ``(B, D)`` embeddings of ``paths[p]`` for each ``p`` in
#: ``positions`` (increasing).
BatchWriter = Callable[[np.ndarray, Sequence[int]], None]


def reading_options(resize: Optional[str], readers: Optional[int]):
    """``(resize, readers)`` checked, resize's default filled in; ValueError names a bad one.
    ``readers`` None stays None: :func:`embed_files` then takes the thread budget's default
    (:func:`~vseimageencoder.pipeline.thread_budget.thread_budget`)."""
    from vseimageencoder.images.transform import check_resize, DEFAULT_RESIZE

    resize = check_resize(resize or DEFAULT_RESIZE)
    if readers is not None and readers < 0:
        raise ValueError('readers must be 0 (read on the main thread) or more, got %d' % readers)
    return resize, readers


def embed_files(model, paths: Sequence, write: BatchWriter, batch_size: int = 32,
                resize: Optional[str] = None, readers: Optional[int] = None,
                on_unreadable: Optional[Callable[[int, Exception], None]] = None,
                on_progress: Optional[Callable[[int, int], None]] = None,
                fuse: Optional[bool] = None):
    """Embed ``paths`` with ``model`` (float32 ``(B, 3, 224, 224)`` tensor -> ``(B, D)``
    tensor), handing each batch of at most ``batch_size`` rows to ``write``.

    Unreadable files (:class:`~vseimageencoder.images.read.ImageReadError`) are skipped and
    reported to ``on_unreadable(position, error)``; ``on_progress(done, skipped)`` follows
    each file. Returns ``(done, skipped)``. Any other error, KeyboardInterrupt included,
    stops the readers and propagates; batches already written stay written.

    ``readers`` (None: the thread budget's default, one per core torch may use, at most 8)
    threads each read a batch and run ``model`` on it, with ``cores // readers`` torch
    threads (:mod:`vseimageencoder.pipeline.batch_threads`); 0 reads on this thread, the tower using every core.
    A ``model`` whose ``device`` is a CUDA device gets its JPEGs decoded and transformed on
    that device instead (:mod:`vseimageencoder.pipeline.cuda_decode`: the exact geometry, computed by
    torch; ``resize`` and ``readers`` do not apply).

    ``fuse``: compile a CPU tower's backbone with oneDNN Graph fusion for the batches this
    run makes (``model.fuse``, :mod:`vseimageencoder.model.onednn_graph`) before the first one; None
    (the default) fuses a tower whose ``fuses_by_default`` says so (a ``bf16`` or ``fp16``
    CPU tower; fp32 gains less and pays more to fuse: pass True) when there are at least
    :data:`FUSE_MIN_IMAGES` paths. A model without ``fuse`` runs as given.
    """
    import torch

    from vseimageencoder.images.checks import CHANNELS

    from vseimageencoder.images.read import ImageReadError

    from vseimageencoder.images.transform import CROP, transform
    from vseimageencoder.pipeline.prefetch import read_in_order

    if batch_size < 1:
        raise ValueError('batch size must be at least 1, got %d' % batch_size)
    resize, readers = reading_options(resize, readers)
    device = getattr(model, 'device', None)
    if device is not None and getattr(device, 'type', None) == 'cuda':
        # A tower on a GPU: JPEGs are decoded and transformed on the device (nvJPEG); the
        # host only reads files (vseimageencoder/pipeline/cuda_decode.py).
        from vseimageencoder.pipeline.cuda_decode import embed_files_on_device
        if fuse:
            _fuse(model, batch_size, torch.get_num_threads())  # says why it cannot
        return embed_files_on_device(model, list(paths), write, batch_size, device, on_unreadable,
                                     on_progress)
    paths = list(paths)
    if fuse is None:
        fuse = len(paths) >= FUSE_MIN_IMAGES and getattr(model, 'fuses_by_default', False)
    if readers != 0:
        # Lanes (vseimageencoder/pipeline/batch_threads.py): each reader thread reads a batch and runs the
        # tower on it with its share of the cores torch may use; readers feeding a tower on
        # this thread would fight its OpenMP threads for the cores.
        from vseimageencoder.pipeline.batch_threads import chunk_size, embed_in_lanes
        from vseimageencoder.pipeline.thread_budget import thread_budget

        budget = thread_budget(torch.get_num_threads(), readers)
        if fuse:
            _fuse(model, chunk_size(len(paths), batch_size, budget.reader_threads), budget.torch_threads)
        return embed_in_lanes(model, paths, functools.partial(transform, resize=resize), write,
                              batch_size, budget.reader_threads, budget.torch_threads,
                              (ImageReadError,), on_unreadable, on_progress)
    if fuse:
        _fuse(model, min(batch_size, len(paths)), torch.get_num_threads())
    batch = np.empty((batch_size, CHANNELS, CROP, CROP), np.float32)
    positions = []
    done = skipped = 0

    def flush():
        nonlocal done
        if positions:
            emb = model(torch.from_numpy(batch[:len(positions)]))
            write(np.ascontiguousarray(emb.numpy(), np.float32), list(positions))
            done += len(positions)
            positions.clear()

    indexed = list(enumerate(paths))
    load = functools.partial(_load_item, functools.partial(transform, resize=resize))
    with read_in_order(indexed, load, readers, batch_size + readers, (ImageReadError,)) as images:
        for (pos, _), x in images:
            if isinstance(x, ImageReadError):
                skipped += 1
                if on_unreadable is not None:
                    on_unreadable(pos, x)
            else:
                batch[len(positions)] = x
                positions.append(pos)
                if len(positions) == batch_size:
                    flush()
            if on_progress is not None:
                on_progress(done, skipped)
    flush()
    return done, skipped


def _fuse(model, batch_size: int, threads: int) -> None:
    from vseimageencoder.pipeline.thread_budget import torch_threads

    if batch_size < 1 or not callable(getattr(model, 'fuse', None)) \
            or getattr(model, 'fused_batch_size', None) == batch_size:
        return
    # Warmed up (the fused graph compiled) with the thread count the batches will get.
    with torch_threads(threads):
        fused = model.fuse(batch_size)
    if fused:
        logger.info('the tower runs fused for batches of %d (oneDNN Graph)', batch_size)


def _load_item(load, item):
    return load(item[1])
