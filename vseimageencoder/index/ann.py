"""Approximate nearest-neighbour search over unit-norm embeddings (faiss IVF, inner product),
saved without pickles or faiss's own format.
"""
import json
import logging
import math
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from vseimageencoder.files.atomic import fsync_dir, fsync_file, write_atomically

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

FORMAT = 'vseimageencoder-ann'
VERSION = 1
MANIFEST = 'manifest.json'

# Rows per k-means cell sampled for training. The cells are many (see suggested_nlist), so a
# modest sample per cell still covers the data (recall measured in docs/index.md).
TRAIN_ROWS_PER_CELL = 64
# k-means needs at least 39 rows per cell (faiss warns below).
MIN_ROWS_PER_CELL = 40
# Norm tolerance of the unit-norm contract: float32 round-off of a normalised 1024-d vector is
# about 1e-6; a forgotten normalisation is off by far more.
NORM_TOLERANCE = 1e-3


class AnnFormatError(ValueError):
    """An ANN directory is missing, damaged or from a newer format; the message names the file."""


def suggested_nlist(n: int) -> int:
    """Number of IVF cells for ``n`` rows: a power of two near ``4 * sqrt(n)`` (4096 for 1M),
    with at least 40 rows per cell (k-means needs them), and 1 (a plain scan) for small ``n``.

    Why that many: with ``sqrt(n)`` cells each cell mixes many groups of similar rows, and the
    small groups, owning no centroid, have their rows filed all over the index, so probing more
    cells barely helps. ``4 * sqrt(n)`` (faiss's own guideline is 4 to 16) gives those groups
    cells of their own, with higher recall in less query time (docs/index.md)."""
    if n < MIN_ROWS_PER_CELL * 16:
        return 1
    target = 2 ** int(round(math.log2(4 * math.sqrt(n))))
    return int(max(1, min(target, n // MIN_ROWS_PER_CELL)))


def suggested_nprobe(nlist: int) -> int:
    """Cells probed per query: 1/128 of them, at least 8 (or all when fewer)."""
    return int(min(nlist, max(8, nlist // 128)))


def _openblas_core_hint() -> Optional[str]:
    """The OpenBLAS kernel family to ask faiss's bundled OpenBLAS for, or None to let it choose.

    faiss-cpu's wheel bundles OpenBLAS 0.3.15, which does not know CPUs newer than itself
    (Sapphire Rapids and later): it falls back to its generic SSE3 kernels, and the k-means
    and row filing of a build run several times slower (docs/index.md). Naming the newest
    family the CPU's flags support restores
    the vector kernels; a CPU OpenBLAS knows gets the same family it would pick itself."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = set()
            for line in f:
                if line.startswith('flags'):
                    flags = set(line.split(':', 1)[1].split())
                    break
    except OSError:
        return None
    if {'avx512f', 'avx512cd', 'avx512bw', 'avx512dq', 'avx512vl'} <= flags:
        return 'SkylakeX'
    if {'avx2', 'fma'} <= flags:
        return 'Haswell'
    return None


def _faiss():
    # Imported on use so that `import vseimageencoder.index` stays cheap and faiss-free.
    if 'faiss' not in sys.modules and 'OPENBLAS_CORETYPE' not in os.environ:
        # OpenBLAS reads the variable once, when faiss loads it; it is removed again so that
        # nothing else (numpy's own OpenBLAS is loaded already, child processes) sees it.
        hint = _openblas_core_hint()
        if hint:
            os.environ['OPENBLAS_CORETYPE'] = hint
            try:
                import faiss  # noqa: F401
            finally:
                os.environ.pop('OPENBLAS_CORETYPE', None)
    import faiss
    return faiss


def _check_vectors(vectors, dim: Optional[int], what: str = 'vectors') -> np.ndarray:
    v = np.asarray(vectors)
    if v.ndim != 2:
        raise ValueError('%s must be a 2-d (N, D) array; got shape %s' % (what, v.shape))
    if v.dtype != np.float32:
        if v.dtype.kind != 'f':
            raise ValueError('%s must be float32; got %s' % (what, v.dtype))
        v = v.astype(np.float32)
    if dim is not None and v.shape[1] != dim:
        raise ValueError('%s have width %d; this ANN index holds %d-d vectors' % (what, v.shape[1], dim))
    if len(v):
        norms = np.sqrt(np.einsum('ij,ij->i', v, v))
        if not np.all(np.isfinite(norms)):
            raise ValueError('%s contain NaN or infinite values' % what)
        bad = np.flatnonzero(np.abs(norms - 1) > NORM_TOLERANCE)
        if len(bad):
            raise ValueError('%s must have unit L2 norm (inner product = cosine); row %d has norm %.6g'
                             % (what, bad[0], norms[bad[0]]))
    return np.ascontiguousarray(v)


def _check_ids(ids, n: int) -> np.ndarray:
    i = np.asarray(ids)
    if i.ndim != 1 or len(i) != n:
        raise ValueError('ids must be a 1-d array of %d ids (one per vector); got shape %s' % (n, i.shape))
    if i.dtype.kind not in 'iu':
        raise ValueError('ids must be integers; got %s' % i.dtype)
    i = i.astype(np.int64)
    if len(i) and i.min() < 0:
        raise ValueError('ids must be >= 0 (faiss uses -1 for "no result"); got %d' % i.min())
    if len(np.unique(i)) != len(i):
        raise ValueError('ids contain duplicates')
    return np.ascontiguousarray(i)


class AnnIndex:
    """An IVF index of unit-norm float32 vectors with int64 ids.

    A faiss ``IndexIVFFlat``: ``nlist`` k-means cells holding the full float32 vectors, so
    returned scores are exact inner products (true cosines), not estimates. Removal deletes
    from the lists, so a removed id is never returned.

    :meth:`save` writes a directory of ``manifest.json`` (replaced by rename, the commit
    point), ``base-<token>/`` (centroids, offsets, ids, vectors as ``.npy``) and one
    ``seg-<token>.npz`` per save since (removed ids, added ids and vectors); a new base is
    written once segments exceed ``merge_fraction`` of the base rows. Only ``.npy``/``.npz``
    read with ``allow_pickle=False`` and the JSON manifest are read back (no pickle, no faiss
    deserialiser): a hostile directory cannot run code, only raise :class:`AnnFormatError`.

    ``nprobe`` trades speed for recall at search time (``search(..., nprobe=)`` overrides it);
    ``merge_fraction`` is the share of base rows the saved segments may reach before a save
    writes a new base.
    """

    def __init__(self, dim: int, nlist: int = 1, nprobe: Optional[int] = None,
                 merge_fraction: float = 0.1):
        if dim < 1 or nlist < 1:
            raise ValueError('dim and nlist must be >= 1; got %d and %d' % (dim, nlist))
        faiss = _faiss()
        self.dim = int(dim)
        self.nlist = int(nlist)
        self.nprobe = int(nprobe) if nprobe else suggested_nprobe(self.nlist)
        self.merge_fraction = float(merge_fraction)
        self._quantizer = faiss.IndexFlatIP(self.dim)
        self._index = faiss.IndexIVFFlat(self._quantizer, self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
        self._ids = np.zeros(0, np.int64)  # live ids, in no particular order
        # What changed since the last save/load, replayed as removes then adds.
        self._pending_removed = []
        self._pending_add_ids = []
        self._pending_add_vectors = []
        self._saved = None  # (resolved dir, manifest dict) of the last save/load
        self._needs_base = True  # the next save writes a base (nothing on disk matches yet)
        #: JSON-able notes saved in the manifest (the store records which commit this reflects).
        self.meta = {}
        if self.nlist == 1:
            # One cell needs no training: every vector goes to it whatever its centroid.
            self._quantizer.add(np.zeros((1, self.dim), np.float32))
            self._index.is_trained = True

    # -- building -------------------------------------------------------------------------

    @classmethod
    def build(cls, vectors, ids, nlist: Optional[int] = None, nprobe: Optional[int] = None,
              merge_fraction: float = 0.1, seed: int = 1234) -> 'AnnIndex':
        """Train the cells on (a sample of) ``vectors`` and add them all.

        ``vectors``: float32 ``(N, D)``, unit norm (a memory map is fine; it is read in chunks).
        ``ids``: int64 ``(N,)``, distinct, >= 0. ``nlist`` defaults to :func:`suggested_nlist`.
        """
        v = np.asarray(vectors) if not isinstance(vectors, np.memmap) else vectors
        if v.ndim != 2:
            raise ValueError('vectors must be a 2-d (N, D) array; got shape %s' % (v.shape,))
        n, dim = v.shape
        ids = _check_ids(ids, n)
        nlist = int(nlist or suggested_nlist(n))
        if nlist > 1 and n < nlist:
            raise ValueError('%d vectors cannot train %d cells' % (n, nlist))
        self = cls(dim, nlist=nlist, nprobe=nprobe, merge_fraction=merge_fraction)
        if nlist > 1:
            self._train(v, seed)
        self._add_chunks(v, ids)
        return self

    def _train(self, v, seed: int) -> None:
        faiss = _faiss()
        n = len(v)
        sample = min(n, TRAIN_ROWS_PER_CELL * self.nlist)
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(n, size=sample, replace=False)) if sample < n else np.arange(n)
        x = _check_vectors(v[rows], self.dim)
        self._index.cp.niter = 10
        self._index.cp.max_points_per_centroid = TRAIN_ROWS_PER_CELL
        self._index.cp.seed = seed
        self._index.cp.spherical = True  # unit-norm centroids suit inner-product assignment
        log.info('training %d cells on %d of %d vectors', self.nlist, sample, n)
        self._index.train(x)
        del x
        assert self._index.is_trained

    def _add_chunks(self, v, ids: np.ndarray, chunk: int = 65536) -> None:
        for start in range(0, len(ids), chunk):
            x = _check_vectors(v[start:start + chunk], self.dim)
            self._index.add_with_ids(x, ids[start:start + chunk])
        self._ids = np.concatenate([self._ids, ids]) if len(self._ids) else ids.copy()

    # -- updating -------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(len(self._ids))

    def ids(self) -> np.ndarray:
        """The live ids (int64, sorted)."""
        return np.sort(self._ids)

    def add(self, vectors, ids) -> None:
        """Add rows; an id already in the index is refused (remove it first)."""
        v = _check_vectors(vectors, self.dim)
        ids = _check_ids(ids, len(v))
        if not len(ids):
            return
        clash = ids[np.isin(ids, self._ids)]
        if len(clash):
            raise ValueError('id %d is already in the ANN index (remove it before adding it again)'
                             % clash[0])
        self._index.add_with_ids(v, ids)
        self._ids = np.concatenate([self._ids, ids])
        self._pending_add_ids.append(ids)
        self._pending_add_vectors.append(v)

    def remove(self, ids) -> int:
        """Remove the given ids (unknown ones are ignored); returns how many were removed."""
        faiss = _faiss()
        ids = np.unique(np.asarray(ids, dtype=np.int64).ravel())
        live = ids[np.isin(ids, self._ids)]
        if not len(live):
            return 0
        removed = int(self._index.remove_ids(faiss.IDSelectorBatch(len(live), faiss.swig_ptr(live))))
        if removed != len(live):
            raise RuntimeError('faiss removed %d of %d ids' % (removed, len(live)))
        self._ids = self._ids[~np.isin(self._ids, live)]
        # Rows added since the last save just leave the pending adds; older rows are logged.
        fresh = np.zeros(len(live), bool)
        for j, (pid, pvec) in enumerate(zip(self._pending_add_ids, self._pending_add_vectors)):
            hit = np.isin(pid, live)
            if hit.any():
                fresh |= np.isin(live, pid)
                self._pending_add_ids[j] = pid[~hit]
                self._pending_add_vectors[j] = pvec[~hit]
        self._pending_removed.append(live[~fresh])
        return removed

    # -- searching ------------------------------------------------------------------------

    def search(self, queries, k: int, nprobe: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows per query by inner product.

        ``queries``: float32 ``(Q, D)``, unit norm for the scores to be cosines. Returns
        ``(scores, ids)``: float32 and int64 ``(Q, min(k, len(self)))``, best first; scores
        are exact inner products with the stored vectors. When the probed cells hold fewer
        than ``k`` live rows the query is searched again probing more cells, so every row of
        the result is filled.
        """
        q = np.asarray(queries)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError('queries must be (Q, %d); got shape %s' % (self.dim, q.shape))
        q = np.ascontiguousarray(q, dtype=np.float32)
        k = int(k)
        if k < 1:
            raise ValueError('k must be >= 1; got %d' % k)
        k = min(k, len(self))
        if k == 0 or not len(q):
            return np.zeros((len(q), k), np.float32), np.zeros((len(q), k), np.int64)
        probe = min(self.nlist, int(nprobe or self.nprobe))
        scores, ids = self._search(q, k, probe)
        short = np.flatnonzero((ids < 0).any(axis=1))
        while len(short) and probe < self.nlist:
            probe = min(self.nlist, probe * 4)
            s2, i2 = self._search(q[short], k, probe)
            scores[short], ids[short] = s2, i2
            short = short[(i2 < 0).any(axis=1)]
        return scores, ids

    def _search(self, q: np.ndarray, k: int, nprobe: int):
        faiss = _faiss()
        params = faiss.SearchParametersIVF(nprobe=int(nprobe))
        scores, ids = self._index.search(q, k, params=params)
        return scores.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)

    # -- persistence ----------------------------------------------------------------------

    def _pending_rows(self) -> int:
        return int(sum(len(i) for i in self._pending_add_ids) + sum(len(i) for i in self._pending_removed))

    def save(self, directory: PathLike) -> None:
        """Persist to ``directory`` (created if missing): one new segment with what changed
        since the last save/load into the same directory, or a new base when there was none,
        the directory holds another state, or the segments outgrow ``merge_fraction``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        d = d.resolve()
        try:
            current = _read_manifest(d) if (d / MANIFEST).exists() else None
        except AnnFormatError as e:
            log.warning('replacing a damaged ANN index: %s', e)
            current = None
        same = (not self._needs_base and self._saved is not None and self._saved[0] == d
                and current is not None and current.get('token') == self._saved[1].get('token'))
        if same:
            seg_rows = int(current['segment_rows']) + self._pending_rows()
            if seg_rows > self.merge_fraction * max(int(current['base_rows']), 1):
                same = False
        if not same:
            self._retrain_if_outgrown()
            manifest = self._write_base(d)
        elif self._pending_rows() == 0:
            return
        else:
            manifest = self._write_segment(d, current)
        old = current
        _write_manifest(d, manifest)
        self._saved = (d, manifest)
        self._needs_base = False
        self._pending_removed, self._pending_add_ids, self._pending_add_vectors = [], [], []
        if old is not None:
            keep = {manifest['base']} | set(manifest['segments'])
            for name in [old['base']] + list(old['segments']):
                if name not in keep:
                    p = d / name
                    shutil.rmtree(str(p), ignore_errors=True) if p.is_dir() else _unlink(p)

    def _retrain_if_outgrown(self) -> None:
        # Cells sized for the rows at build time get slow as the index grows by adds; a base
        # write (already proportional to the whole index) retrains once they are 4x too few.
        want = suggested_nlist(len(self))
        if want < 4 * self.nlist:
            return
        ids, vectors = self._dump()
        fresh = AnnIndex.build(vectors, ids, nlist=want, merge_fraction=self.merge_fraction)
        log.info('ANN: %d rows outgrew %d cells; retrained with %d', len(self), self.nlist, want)
        self.nlist, self.nprobe = fresh.nlist, fresh.nprobe
        self._quantizer, self._index, self._ids = fresh._quantizer, fresh._index, fresh._ids

    def _dump(self):
        faiss = _faiss()
        invlists = self._index.invlists
        ids, vectors = [], []
        for l in range(self.nlist):
            size = invlists.list_size(l)
            if size:
                i = np.empty(size, np.int64)
                v = np.empty((size, self.dim), np.float32)
                faiss.memcpy(faiss.swig_ptr(i), invlists.get_ids(l), size * 8)
                faiss.memcpy(faiss.swig_ptr(v), invlists.get_codes(l), size * self.dim * 4)
                ids.append(i)
                vectors.append(v)
        if not ids:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        return np.concatenate(ids), np.concatenate(vectors)

    def _write_segment(self, d: Path, current: dict) -> dict:
        name = 'seg-%s.npz' % uuid.uuid4().hex[:12]
        removed = (np.concatenate(self._pending_removed) if self._pending_removed
                   else np.zeros(0, np.int64))
        add_ids = (np.concatenate(self._pending_add_ids) if self._pending_add_ids
                   else np.zeros(0, np.int64))
        add_vectors = (np.concatenate(self._pending_add_vectors) if self._pending_add_vectors
                       else np.zeros((0, self.dim), np.float32))
        def write(tmp):
            with open(tmp, 'wb') as f:
                np.savez(f, removed=removed, add_ids=add_ids, add_vectors=add_vectors)

        write_atomically(d / name, write)
        manifest = dict(current)
        manifest['segments'] = list(current['segments']) + [name]
        manifest['segment_rows'] = int(current['segment_rows']) + len(removed) + len(add_ids)
        manifest['rows'] = len(self) if hasattr(self, '_ids') else None
        manifest['token'] = uuid.uuid4().hex
        manifest['nprobe'] = self.nprobe
        manifest['meta'] = dict(self.meta)
        log.info('ANN %s: segment %s (%d removed, %d added)', d, name, len(removed), len(add_ids))
        return manifest

    def _write_base(self, d: Path) -> dict:
        faiss = _faiss()
        name = 'base-%s' % uuid.uuid4().hex[:12]
        tmp = d / ('.tmp-' + name)
        shutil.rmtree(str(tmp), ignore_errors=True)
        tmp.mkdir()
        invlists = self._index.invlists
        sizes = np.array([invlists.list_size(l) for l in range(self.nlist)], np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        n = int(offsets[-1])
        ids = np.lib.format.open_memmap(str(tmp / 'ids.npy'), mode='w+', dtype=np.int64, shape=(n,))
        vec = np.lib.format.open_memmap(str(tmp / 'vectors.npy'), mode='w+', dtype=np.float32,
                                        shape=(n, self.dim))
        for l in np.flatnonzero(sizes):
            a, b = offsets[l], offsets[l + 1]
            faiss.memcpy(faiss.swig_ptr(ids[a:b]), invlists.get_ids(int(l)), int(b - a) * 8)
            faiss.memcpy(faiss.swig_ptr(vec[a:b]), invlists.get_codes(int(l)), int(b - a) * self.dim * 4)
        ids.flush()
        vec.flush()
        del ids, vec
        centroids = self._quantizer.reconstruct_n(0, self.nlist).astype(np.float32)
        np.save(str(tmp / 'centroids.npy'), centroids, allow_pickle=False)
        np.save(str(tmp / 'offsets.npy'), offsets, allow_pickle=False)
        for f in ('ids.npy', 'vectors.npy', 'centroids.npy', 'offsets.npy'):
            fsync_file(tmp / f)
        fsync_dir(tmp)
        os.replace(str(tmp), str(d / name))
        log.info('ANN %s: base %s (%d rows, %d cells)', d, name, n, self.nlist)
        return {'format': FORMAT, 'version': VERSION, 'dim': self.dim, 'nlist': self.nlist,
                'nprobe': self.nprobe, 'merge_fraction': self.merge_fraction, 'base': name,
                'base_rows': n, 'segments': [], 'segment_rows': 0, 'rows': n,
                'token': uuid.uuid4().hex, 'meta': dict(self.meta)}

    @classmethod
    def load(cls, directory: PathLike) -> 'AnnIndex':
        """Read what :meth:`save` wrote; :class:`AnnFormatError` names the file at fault."""
        faiss = _faiss()
        d = Path(directory).resolve()
        m = _read_manifest(d)
        self = cls(m['dim'], nlist=m['nlist'], nprobe=m['nprobe'], merge_fraction=m['merge_fraction'])
        base = d / m['base']
        centroids = _load_npy(base / 'centroids.npy', np.float32, (self.nlist, self.dim))
        offsets = _load_npy(base / 'offsets.npy', np.int64, (self.nlist + 1,))
        n = int(offsets[-1])
        if offsets[0] != 0 or np.any(np.diff(offsets) < 0) or n != m['base_rows']:
            raise AnnFormatError('%s: cell offsets are not a running count of %d rows'
                                 % (base / 'offsets.npy', m['base_rows']))
        ids = _load_npy(base / 'ids.npy', np.int64, (n,), mmap=True)
        vectors = _load_npy(base / 'vectors.npy', np.float32, (n, self.dim), mmap=True)
        if self.nlist > 1:
            self._quantizer.add(centroids)
            self._index.is_trained = True
        cells = np.repeat(np.arange(self.nlist, dtype=np.int64), np.diff(offsets))
        chunk = 65536
        for start in range(0, n, chunk):
            x = np.ascontiguousarray(vectors[start:start + chunk])
            i = np.ascontiguousarray(ids[start:start + chunk])
            c = np.ascontiguousarray(cells[start:start + chunk])
            self._index.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(i), faiss.swig_ptr(c))
        self._ids = np.array(ids)
        if len(np.unique(self._ids)) != n or (n and self._ids.min() < 0):
            raise AnnFormatError('%s: ids are not distinct non-negative integers' % (base / 'ids.npy'))
        for seg in m['segments']:
            p = d / seg
            try:
                with np.load(str(p), allow_pickle=False) as z:
                    removed, add_ids, add_vectors = z['removed'], z['add_ids'], z['add_vectors']
            except FileNotFoundError:
                raise
            except (OSError, ValueError, KeyError, EOFError) as e:
                raise AnnFormatError('%s: not a readable ANN segment (%s)' % (p, e)) from None
            try:
                self.remove(removed)
                self.add(add_vectors, add_ids)
            except ValueError as e:
                raise AnnFormatError('%s: %s' % (p, e)) from None
        self._pending_removed, self._pending_add_ids, self._pending_add_vectors = [], [], []
        self._needs_base = False
        self.meta = dict(m.get('meta') or {})
        if len(self) != m['rows']:
            raise AnnFormatError('%s: manifest says %d rows, the files hold %d'
                                 % (d / MANIFEST, m['rows'], len(self)))
        self._saved = (d, m)
        return self


def saved_ids(directory: PathLike) -> Tuple[np.ndarray, dict]:
    """``(live ids int64 sorted, manifest)`` of the ANN index saved in ``directory``, read
    from its id files only (no vectors): what :func:`append_saved` callers diff against."""
    d = Path(directory).resolve()
    m = _read_manifest(d)
    ids = np.array(_load_npy(d / m['base'] / 'ids.npy', np.int64, (int(m['base_rows']),), mmap=True))
    for seg in m['segments']:
        try:
            with np.load(str(d / seg), allow_pickle=False) as z:
                removed, added = z['removed'], z['add_ids']
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise AnnFormatError('%s: not a readable ANN segment (%s)' % (d / seg, e)) from None
        ids = np.concatenate([ids[~np.isin(ids, removed)], added.astype(np.int64)])
    ids.sort()
    if len(ids) != m['rows']:
        raise AnnFormatError('%s: manifest says %d rows, the id files hold %d' % (d / MANIFEST, m['rows'], len(ids)))
    return ids, m


def append_saved(directory: PathLike, vectors, ids, removed, meta: Optional[dict] = None,
                 manifest: Optional[dict] = None) -> None:
    """Record an update to the ANN index saved in ``directory`` without loading it: remove
    ``removed`` (ids it holds), then add ``(vectors, ids)`` (ids it does not hold). Writes one
    segment and a new manifest, a cost proportional to the update; when the segments would
    exceed ``merge_fraction`` of the base, loads the index and saves a new base instead
    (amortised over the updates that filled the segments). ``manifest``: as returned by
    :func:`saved_ids` (read again when omitted)."""
    d = Path(directory).resolve()
    m = manifest if manifest is not None else _read_manifest(d)
    removed = np.unique(np.asarray(removed, dtype=np.int64).ravel())
    dim = int(m['dim'])
    v = _check_vectors(vectors, dim) if len(ids) else np.zeros((0, dim), np.float32)
    ids = _check_ids(ids, len(v))
    seg_rows = int(m['segment_rows']) + len(removed) + len(ids)
    if seg_rows > float(m['merge_fraction']) * max(int(m['base_rows']), 1):
        ann = AnnIndex.load(d)
        ann.remove(removed)
        ann.add(v, ids)
        if meta is not None:
            ann.meta = dict(meta)
        ann.save(d)
        return
    if not len(removed) and not len(ids) and meta is None:
        return
    shell = AnnIndex.__new__(AnnIndex)
    shell.dim, shell.nprobe = dim, int(m['nprobe'])
    shell.meta = dict(meta if meta is not None else m.get('meta') or {})
    shell._pending_removed, shell._pending_add_ids, shell._pending_add_vectors = [removed], [ids], [v]
    new = shell._write_segment(d, m)
    new['rows'] = int(m['rows']) - len(removed) + len(ids)
    _write_manifest(d, new)


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass


def _load_npy(path: Path, dtype, shape, mmap: bool = False) -> np.ndarray:
    try:
        a = np.load(str(path), allow_pickle=False, mmap_mode='r' if mmap else None)
    except FileNotFoundError:
        raise  # a writer replaced it after we read the manifest: the caller reads again
    except (OSError, ValueError, EOFError) as e:
        raise AnnFormatError('%s: not a readable .npy file (%s)' % (path, e)) from None
    if a.dtype != dtype or tuple(a.shape) != tuple(shape):
        raise AnnFormatError('%s holds %s %s; expected %s %s'
                             % (path, a.dtype, a.shape, np.dtype(dtype), tuple(shape)))
    return a


def _read_manifest(d: Path) -> dict:
    p = d / MANIFEST
    try:
        m = json.loads(p.read_text(encoding='utf-8'))
    except FileNotFoundError:
        raise AnnFormatError('%s is not an ANN index: %s is missing' % (d, p)) from None
    except (OSError, ValueError) as e:
        raise AnnFormatError('%s: not a readable manifest (%s)' % (p, e)) from None
    if not isinstance(m, dict) or m.get('format') != FORMAT:
        raise AnnFormatError('%s is not an ANN manifest (format %r)' % (p, m.get('format') if isinstance(m, dict) else None))
    if not isinstance(m.get('version'), int) or m['version'] > VERSION:
        raise AnnFormatError('%s has format version %r; this release reads up to %d'
                             % (p, m.get('version'), VERSION))
    try:
        ok = (int(m['dim']) >= 1 and int(m['nlist']) >= 1 and int(m['nprobe']) >= 1
              and int(m['base_rows']) >= 0 and int(m['rows']) >= 0 and int(m['segment_rows']) >= 0
              and float(m['merge_fraction']) >= 0 and isinstance(m['segments'], list)
              and _plain_name(m['base']) and all(_plain_name(s) for s in m['segments']))
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise AnnFormatError('%s: missing or invalid fields' % p)
    return m


def _plain_name(name) -> bool:
    # Names in the manifest must stay inside the directory.
    return isinstance(name, str) and name not in ('', '.', '..') and '/' not in name and '\\' not in name


def _write_manifest(d: Path, manifest: dict) -> None:
    def write(tmp):
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(manifest, f, indent=1, sort_keys=True)

    write_atomically(d / MANIFEST, write, sync_dir=True)
