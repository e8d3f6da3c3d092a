"""Keeping an index folder's approximate index (:mod:`.ann`, in ``INDEX_DIR/ann/``) in step with
its committed rows.
"""
import logging
import time
from typing import Optional

import numpy as np

from vseimageencoder.index import ann as _ann

logger = logging.getLogger(__name__)

#: Changes above this share of the live rows rebuild the ANN (new cells) instead of patching it.
REBUILD_FRACTION = 0.5
#: ``--ann`` on an index without a saved ANN builds one in memory up to this many rows.
IN_MEMORY_LIMIT = 200000


#: The approximate index's folder inside an index folder.
ANN_DIR = 'ann'


def _dir(index_dir):
    return index_dir / ANN_DIR


def _stamp(view) -> dict:
    return {'commit': int(view.commit), 'generation': int(view.manifest['generation'])}


def _build(view) -> '_ann.AnnIndex':
    ids = view.ids()
    vectors = view.live_rows()
    t = time.perf_counter()
    ann = _ann.AnnIndex.build(vectors, ids)
    logger.info('approximate index of %d rows built in %.1f s (%d cells)', len(ids), time.perf_counter() - t,
                ann.nlist)
    return ann


def ann_after_update(view, threshold: int) -> None:
    """Bring ``view.directory/ann`` in step with ``view``, the index's last commit; nothing
    while there is no ``ann/`` and fewer than ``threshold`` live rows.

    Builds ``ann/`` once there are ``threshold`` live rows; afterwards diffs ids against the
    save and appends one segment, so an update writes in proportion to its size; a
    wholesale change (``--rebuild``, another width) builds anew. Rows are committed before
    this runs: they are the truth, the ANN is derived from them by id, so a crash in
    between is harmless (:func:`ann_for` catches up)."""
    where = _dir(view.directory)
    t = time.perf_counter()
    live = view.ids()
    exists = (where / _ann.MANIFEST).exists()
    if not exists and len(live) < threshold:
        return
    stamp = _stamp(view)
    if exists:
        try:
            held, m = _ann.saved_ids(where)
        except (_ann.AnnFormatError, FileNotFoundError) as e:
            logger.warning('rebuilding the approximate index: %s', e)
            held, m = None, None
        if held is not None and int(m['dim']) == view.dim:
            live_sorted = np.sort(live)
            gone = held[~np.isin(held, live_sorted, assume_unique=True)]
            new = live_sorted[~np.isin(live_sorted, held, assume_unique=True)]
            if len(gone) + len(new) <= REBUILD_FRACTION * max(len(live), 1):
                if len(gone) or len(new) or (m.get('meta') or {}) != stamp:
                    _ann.append_saved(where, view.vectors_of(new), new, gone, meta=stamp, manifest=m)
                    logger.info('approximate index updated (%d added, %d removed) in %.2f s',
                                len(new), len(gone), time.perf_counter() - t)
                return
    ann = _build(view)
    ann.meta = stamp
    ann.save(where)


def ann_for(view) -> Optional['_ann.AnnIndex']:
    """The approximate index answering for exactly ``view``'s live rows, or None (the caller
    scans). Cached on the view; caught up in memory when the view is newer than the save (a
    writer killed between its commit and the ANN update), so a removed row is never returned."""
    cached = getattr(view, '_ann', None)
    stamp = _stamp(view)
    if cached is not None and isinstance(cached, tuple):
        ann, at = cached
        if at == stamp:
            return ann
    else:
        ann = _load(view)
        if ann is None:
            return None
    if (ann.meta or {}) != stamp or len(ann) != len(view):
        held = ann.ids()
        live = np.sort(view.ids())
        gone = held[~np.isin(held, live, assume_unique=True)]
        new = live[~np.isin(live, held, assume_unique=True)]
        ann.remove(gone)
        ann.add(view.vectors_of(new), new)
        ann.meta = stamp
    view._ann = (ann, stamp)
    return ann


def _load(view):
    where = _dir(view.directory)
    if (where / _ann.MANIFEST).exists():
        for attempt in range(5):
            try:
                ann = _ann.AnnIndex.load(where)
            except FileNotFoundError:
                continue  # a writer replaced a part after we read its manifest: read again
            except _ann.AnnFormatError as e:
                logger.warning('%s: not using the approximate index: %s', view.directory, e)
                break
            if ann.dim == view.dim:
                return ann
            break
    if len(view) <= IN_MEMORY_LIMIT:
        return _build(view)
    logger.warning('%s has %d rows and no usable approximate index (ann/); '
                   'run `vseimageencoder index` on it to build one', view.directory, len(view))
    return None
