"""The on-disk index: append-only data files and one manifest that commits them (format and
crash-safety argument in docs/index.md).
"""
import errno
import json
import logging
import os
import re
from bisect import bisect_left
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from vseimageencoder.files.atomic import write_atomically
from vseimageencoder.index.ann_store import ANN_DIR, ann_after_update, ann_for  # noqa: F401  (ANN_DIR: part of the format)
from vseimageencoder.index.name_escaping import BadEscapeError, escape, unescape
from vseimageencoder.index.exact import NonFiniteRowError, cosine_scores, normalize_queries, top_k

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

FORMAT = 'vseimageencoder-index'
VERSION = 1
MANIFEST = 'manifest.json'
LOCK = 'lock'

#: From this many live rows on, search is approximate unless told otherwise.
ANN_THRESHOLD = 50000

#: Names a crashed first run can leave in a folder that has no manifest yet.
_OWN_FILE = re.compile(r'^(lock|vectors\.\d+\.f32|records\.\d+\.jsonl|\.manifest\..*\.tmp|ann)$')
_MAX_MANIFEST = 1 << 20


class IndexFormatError(ValueError):
    """The folder is not an index, or one of its parts is damaged; the message names it."""


class NotAnIndexError(IndexFormatError):
    """The folder holds something other than an index."""


class NewerFormatError(IndexFormatError):
    """The index was written by a newer format version than this package reads."""


class DamagedIndexError(IndexFormatError):
    """A part of the index disagrees with its manifest (short file, bad record, counts)."""


class IndexLockedError(RuntimeError):
    """Another process is writing the index."""


class ProvenanceMismatchError(ValueError):
    """The model at hand is not the one the index was embedded with; names both."""


class NoApproximateIndexError(RuntimeError):
    """Approximate search was asked for, but this index has none (and none can be built)."""


# --------------------------------------------------------------------------- manifest

def manifest_path(directory: PathLike) -> Path:
    return Path(directory) / MANIFEST


def data_names(generation: int) -> Tuple[str, str]:
    return 'vectors.%d.f32' % generation, 'records.%d.jsonl' % generation


def read_manifest(directory: PathLike) -> dict:
    """The committed manifest of ``directory``, checked; :class:`IndexFormatError` naming the
    folder or file when it is not an index, is newer or is damaged."""
    directory = Path(directory)
    path = manifest_path(directory)
    if not directory.is_dir():
        raise NotAnIndexError('%s is not an index folder (no such folder)' % directory)
    try:
        with open(str(path), 'rb') as f:
            raw = f.read(_MAX_MANIFEST + 1)
    except FileNotFoundError:
        raise NotAnIndexError('%s is not an index: it has no %s (create one with: '
                              'vseimageencoder index %s PHOTOS...)' % (directory, MANIFEST, directory)) from None
    if len(raw) > _MAX_MANIFEST:
        raise DamagedIndexError('%s is over %d bytes: not an index manifest' % (path, _MAX_MANIFEST))
    try:
        m = json.loads(raw.decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as e:
        raise DamagedIndexError('%s is not valid JSON (%s)' % (path, e)) from None
    if not isinstance(m, dict) or m.get('format') != FORMAT:
        raise NotAnIndexError('%s is not a vseimageencoder index manifest' % path)
    version = m.get('version')
    if not isinstance(version, int) or isinstance(version, bool):
        raise DamagedIndexError('%s has no format version' % path)
    if version > VERSION:
        raise NewerFormatError('%s is index format version %d; this vseimageencoder reads up to '
                               'version %d: upgrade the package' % (path, version, VERSION))
    for key in ('generation', 'dim', 'rows', 'records_bytes', 'next_id', 'commit'):
        v = m.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise DamagedIndexError('%s: %r is %r, expected a non-negative integer' % (path, key, v))
    if not 1 <= m['dim'] <= 65536:
        raise DamagedIndexError('%s: dim %d is outside 1..65536' % (path, m['dim']))
    if m['rows'] > m['next_id']:
        raise DamagedIndexError('%s: %d rows but only %d ids were ever given' % (path, m['rows'], m['next_id']))
    if not isinstance(m.get('provenance'), dict):
        raise DamagedIndexError('%s has no provenance record' % path)
    return m


def write_manifest(directory: PathLike, manifest: dict) -> None:
    """Commit ``manifest``: temporary file, fsync, rename over the old one, fsync the folder."""
    def write(tmp):
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
            f.write('\n')

    write_atomically(manifest_path(directory), write, mode=0o644, sync_dir=True)


# --------------------------------------------------------------------------- rows and records

class _Rows:
    """What the records of one generation say, row by row (row ``i`` is the ``i``-th add)."""

    def __init__(self):
        self.ids: List[int] = []
        self.paths: List[str] = []
        self.sizes: List[int] = []
        self.mtimes: List[int] = []
        self.dead: set = set()  # row numbers removed
        self.bad: Dict[str, Tuple[int, int, str]] = {}  # unreadable file -> (size, mtime_ns, why)

    def copy(self) -> '_Rows':
        c = _Rows()
        c.ids, c.paths, c.sizes, c.mtimes = list(self.ids), list(self.paths), list(self.sizes), list(self.mtimes)
        c.dead, c.bad = set(self.dead), dict(self.bad)
        return c

    def apply(self, text: str, where: str, next_id: int) -> None:
        """Apply the records in ``text`` (whole lines); DamagedIndexError naming ``where``."""
        if not text:
            return
        if not text.endswith('\n'):
            raise DamagedIndexError('%s: the committed records end inside a line' % where)
        try:
            records = json.loads('[' + text[:-1].replace('\n', ',') + ']')
        except ValueError as e:
            raise DamagedIndexError('%s: a committed record is not valid JSON (%s)' % (where, e)) from None
        if '"del"' not in text and '"bad"' not in text and self._add_all(records, next_id):
            return
        ids, paths, sizes, mtimes = self.ids, self.paths, self.sizes, self.mtimes
        for r in records:
            if not isinstance(r, dict):
                raise DamagedIndexError('%s: record %r is not an object' % (where, r))
            if 'bad' in r:
                try:
                    path = unescape(r['bad'])
                    if r.get('gone'):
                        self.bad.pop(path, None)
                    else:
                        self.bad[path] = (int(r['size']), int(r['mtime_ns']), str(r.get('why', '')))
                except (BadEscapeError, KeyError, TypeError, ValueError) as e:
                    raise DamagedIndexError('%s: damaged record of an unreadable file (%s)' % (where, e)) from None
                continue
            if 'del' in r:
                i = r['del']
                row = bisect_left(ids, i) if isinstance(i, int) else len(ids)
                if row == len(ids) or ids[row] != i or row in self.dead:
                    raise DamagedIndexError('%s: removes id %r, which is not a live row' % (where, i))
                self.dead.add(row)
                continue
            try:
                i, p, size, mtime = r['id'], r['path'], r['size'], r['mtime_ns']
                ok = (isinstance(i, int) and isinstance(p, str) and isinstance(size, int)
                      and isinstance(mtime, int) and 0 <= i < next_id)
            except KeyError:
                ok = False
            if not ok or (ids and i <= ids[-1]):
                raise DamagedIndexError('%s: record %s is not a valid row (ids must increase)'
                                        % (where, json.dumps(r)[:200]))
            try:
                path = unescape(p)
            except BadEscapeError as e:
                raise DamagedIndexError('%s: record of id %d has a damaged file name (%s)' % (where, i, e)) from None
            ids.append(i)
            paths.append(path)
            sizes.append(size)
            mtimes.append(mtime)


    def _add_all(self, records: list, next_id: int) -> bool:
        """The common case, in whole-list steps: every record adds a valid row. False (nothing
        changed) when any does not, for the record-by-record path to name it."""
        # Type checks as set(map(type, ...)): decided in C, not per record in Python.
        try:
            if set(map(type, records)) != {dict} or set(map(len, records)) != {4}:
                return False
            ids = [r['id'] for r in records]
            raw = [r['path'] for r in records]
            sizes = [r['size'] for r in records]
            mtimes = [r['mtime_ns'] for r in records]
        except KeyError:
            return False
        if not (set(map(type, ids)) == set(map(type, sizes)) == set(map(type, mtimes)) == {int}
                and set(map(type, raw)) == {str}):
            return False
        try:
            arr = np.asarray(([self.ids[-1]] if self.ids else []) + ids, dtype=np.int64)
        except OverflowError:
            return False
        if not (0 <= ids[0] and ids[-1] < next_id and (len(arr) < 2 or (np.diff(arr) > 0).all())):
            return False
        try:
            paths = [unescape(p) for p in raw]
        except BadEscapeError:
            return False
        self.ids.extend(ids)
        self.paths.extend(paths)
        self.sizes.extend(sizes)
        self.mtimes.extend(mtimes)
        return True


def _map_vectors(path: Path, rows: int, dim: int) -> np.ndarray:
    want = rows * dim * 4
    try:
        have = os.stat(str(path)).st_size
    except FileNotFoundError:
        if rows == 0:
            return np.zeros((0, dim), np.float32)
        raise
    if have < want:
        raise DamagedIndexError('%s holds %d bytes, but the manifest commits %d rows of %d float32 '
                                '(%d bytes)' % (path, have, rows, dim, want))
    if rows == 0:
        return np.zeros((0, dim), np.float32)
    return np.memmap(str(path), dtype='<f4', mode='r', shape=(rows, dim))


# --------------------------------------------------------------------------- the read-only view

class Index:
    """A read-only view of one committed state of an index (see :func:`open_index`).

    Scores are cosine similarities: stored rows and queries are unit vectors.
    """

    def __init__(self, directory: PathLike, ann_threshold: int = ANN_THRESHOLD):
        self.directory = Path(directory)
        self.ann_threshold = ann_threshold
        self._ann = None
        self._load()

    # -- loading
    def _load(self, tries: int = 5) -> None:
        for attempt in range(tries):
            m = read_manifest(self.directory)
            try:
                self._load_from(m)
                return
            except FileNotFoundError as e:
                # A compaction switched generations between our manifest read and opening
                # its files: read the new manifest.
                if attempt == tries - 1:
                    raise DamagedIndexError('%s: %s, named by its manifest, is missing'
                                            % (self.directory, e.filename)) from None

    def _load_from(self, m: dict, base: Optional[Tuple['_Rows', int]] = None) -> None:
        """Read the state ``m`` commits; ``base``: ``(rows, bytes)`` already read of the same
        generation (a copy this may extend), so only the records after them are read."""
        vec_name, rec_name = data_names(m['generation'])
        rec_path = self.directory / rec_name
        rows = _Rows()
        start = 0
        if base is not None:
            rows, start = base
        if m['records_bytes'] > start:
            with open(str(rec_path), 'rb') as f:
                f.seek(start)
                data = f.read(m['records_bytes'] - start)
            if len(data) != m['records_bytes'] - start:
                raise DamagedIndexError('%s holds %d bytes, but the manifest commits %d: the file '
                                        'was truncated' % (rec_path, start + len(data), m['records_bytes']))
            try:
                text = data.decode('utf-8')
            except UnicodeDecodeError as e:
                raise DamagedIndexError('%s: committed records are not UTF-8 (%s)' % (rec_path, e)) from None
            rows.apply(text, str(rec_path), m['next_id'])
        elif not rec_path.exists() and m['rows']:
            raise FileNotFoundError(errno.ENOENT, 'no such file', str(rec_path))
        if len(rows.ids) != m['rows']:
            raise DamagedIndexError('%s: the records add %d rows, but the manifest commits %d'
                                    % (rec_path, len(rows.ids), m['rows']))
        vectors = _map_vectors(self.directory / vec_name, m['rows'], m['dim'])
        ids = np.asarray(rows.ids, dtype=np.int64)
        live = np.ones(len(ids), bool)
        if rows.dead:
            live[np.fromiter(rows.dead, np.int64, len(rows.dead))] = False
        live_count = int(live.sum())
        if m.get('live', live_count) != live_count:
            raise DamagedIndexError('%s: the records leave %d live rows, but the manifest says %r'
                                    % (rec_path, live_count, m.get('live')))
        if base is None:
            self._ann = None  # another generation: the approximate index is loaded anew
        self._manifest, self._rows_state, self._vectors = m, rows, vectors
        self._ids, self._live, self._live_count = ids, live, live_count

    def refresh(self) -> bool:
        """Read the newest commit if there is one; True when the view changed. Within one
        generation only the records appended since are read."""
        for attempt in range(5):
            m = read_manifest(self.directory)
            if m['commit'] == self._manifest['commit'] and m['generation'] == self._manifest['generation']:
                return False
            try:
                same = (m['generation'] == self._manifest['generation']
                        and m['records_bytes'] >= self._manifest['records_bytes'])
                if same:
                    self._load_from(m, base=(self._rows_state.copy(), self._manifest['records_bytes']))
                else:
                    self._load_from(m)
                return True
            except FileNotFoundError:
                continue
        raise DamagedIndexError('%s changed generation repeatedly while being read' % self.directory)

    # -- what it holds
    @property
    def manifest(self) -> dict:
        return dict(self._manifest)

    @property
    def dim(self) -> int:
        return int(self._manifest['dim'])

    @property
    def provenance(self) -> dict:
        return dict(self._manifest['provenance'])

    @property
    def commit(self) -> int:
        return int(self._manifest['commit'])

    def __len__(self) -> int:
        return self._live_count

    def ids(self) -> np.ndarray:
        """Live ids, int64, in insertion order."""
        return self._ids[self._live]

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """float32 ``(len(ids), dim)``: the vectors of live ``ids`` (int64), in that order."""
        return np.asarray(self._vectors[np.searchsorted(self._ids, ids)], np.float32)

    def live_rows(self) -> np.ndarray:
        """float32 ``(len(self), dim)``: the live rows' vectors in id order; the memory map
        itself when no row was removed (read it in chunks, never copied whole)."""
        if self._live.all():
            return self._vectors
        return np.asarray(self._vectors[self._live], np.float32)

    def _row(self, id_: int) -> int:
        row = int(np.searchsorted(self._ids, id_))
        if row >= len(self._ids) or self._ids[row] != id_ or not self._live[row]:
            raise KeyError('id %r is not a live row of %s' % (id_, self.directory))
        return row

    def file(self, id_: int) -> str:
        """The file of live id ``id_`` (as ``os.fsdecode`` gives names); KeyError otherwise."""
        return self._rows_state.paths[self._row(int(id_))]

    def vector(self, id_: int) -> np.ndarray:
        """The stored unit-norm float32 ``(D,)`` embedding of live id ``id_``."""
        return np.array(self._vectors[self._row(int(id_))], dtype=np.float32)

    def entries(self) -> Dict[str, Tuple[int, int, int]]:
        """``{file: (id, size, mtime_ns)}`` for every live row (what an update compares)."""
        r = self._rows_state
        if self._live_count == len(r.ids):  # nothing removed: zip in C, no per-row Python
            return dict(zip(r.paths, zip(r.ids, r.sizes, r.mtimes)))
        return {r.paths[i]: (r.ids[i], r.sizes[i], r.mtimes[i]) for i in np.nonzero(self._live)[0].tolist()}

    def unreadable_entries(self) -> Dict[str, Tuple[int, int, str]]:
        """``{file: (size, mtime_ns, why)}`` of files that could not be read when last tried
        (an update does not try them again until they change)."""
        return dict(self._rows_state.bad)

    def live_vectors(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(ids int64 (L,), vectors float32 (L, D))`` of the live rows, in id order (a copy)."""
        return self._ids[self._live], np.asarray(self._vectors[self._live], dtype=np.float32)

    # -- search
    def search_ids(self, queries, k: int, exact: Optional[bool] = None) -> List[List[Tuple[float, int]]]:
        """Per query, the ``k`` best live rows as ``(cosine, id)``, best first (all live rows
        when ``k`` exceeds them). ``exact``: True scans every row, False uses the approximate
        index (:class:`NoApproximateIndexError` when there is none), None picks the
        approximate one from :attr:`ann_threshold` live rows on when available. Scores are
        true cosines either way. ``queries``: float (Q, D) (or (D,)); normalised here."""
        if k < 1:
            raise ValueError('k must be at least 1, got %d' % k)
        q = normalize_queries(queries, self.dim)
        if exact is False or (exact is None and self._live_count >= self.ann_threshold):
            ann = _ann_for(self)
            if ann is not None:
                return self._search_ann(ann, q, k)
            if exact is False:
                raise NoApproximateIndexError('%s has no approximate index to search' % self.directory)
        return self._search_exact(q, k)

    def search(self, queries, k: int, exact: Optional[bool] = None) -> List[List[Tuple[float, str]]]:
        """As :meth:`search_ids`, with each row's file in place of its id."""
        paths, ids = self._rows_state.paths, self._ids
        out = []
        for hits in self.search_ids(queries, k, exact):
            out.append([(s, paths[int(np.searchsorted(ids, i))]) for s, i in hits])
        return out

    def _search_exact(self, q: np.ndarray, k: int) -> List[List[Tuple[float, int]]]:
        try:
            scores = cosine_scores(self._vectors, q, normalize_rows=False)
        except NonFiniteRowError as e:
            if self._live[e.row]:
                raise DamagedIndexError('%s: the stored embedding of %s (id %d) holds NaN or infinity'
                                        % (self.directory, escape(self._rows_state.paths[e.row]),
                                           self._ids[e.row])) from None
            scores = cosine_scores(np.where(self._live[:, None], self._vectors, 0), q, normalize_rows=False)
        return [[(s, int(self._ids[row])) for s, row in hits] for hits in top_k(scores, k, self._live)]

    def _search_ann(self, ann, q: np.ndarray, k: int) -> List[List[Tuple[float, int]]]:
        """Candidates from the approximate index, re-scored with the stored rows (so scores
        are true cosines) and ordered as the exact scan orders them."""
        cand = ann.search(q, min(k, self._live_count))
        cand = np.asarray(cand[1] if isinstance(cand, tuple) else cand, dtype=np.int64).reshape(len(q), -1)
        out = []
        for qi in range(len(q)):
            ids = cand[qi][cand[qi] >= 0]
            rows = np.searchsorted(self._ids, ids)
            ok = rows < len(self._ids)
            rows, ids = rows[ok], ids[ok]
            rows = np.unique(rows[(self._ids[rows] == ids) & self._live[rows]])  # sorted
            s = (np.asarray(self._vectors[rows], np.float32) @ q[qi]) if len(rows) else np.zeros(0, np.float32)
            order = np.lexsort((rows, -s))[:k]
            out.append([(float(s[j]), int(self._ids[rows[j]])) for j in order])
        return out


def _ann_for(index: Index):
    """The approximate index for ``index``'s rows, or None (then search scans).

    The seam where vseimageencoder.index.ann plugs in: it must return an object whose
    ``search(queries (Q, D) unit float32, k)`` gives ``(scores, ids)``, ids ``(Q, k)`` int64
    (-1 for none).
    """
    return ann_for(index)


def _ann_after_update(writer: 'Writer') -> None:
    """Bring the approximate index in step with what ``writer`` committed (the seam where
    vseimageencoder.index.ann plugs in)."""
    view = writer.view
    if view is None or view.manifest['generation'] != writer.manifest['generation']:
        view = open_index(writer.directory)
    else:
        view.refresh()
    ann_after_update(view, ANN_THRESHOLD)


def open_index(directory: PathLike, ann_threshold: int = ANN_THRESHOLD) -> Index:
    """A read-only view of the last committed state of the index in ``directory``.

    Raises :class:`IndexFormatError` (a subclass naming the fault) when the folder is not an
    index, is from a newer format version, or a part disagrees with the manifest. Nothing is
    written.
    """
    return Index(directory, ann_threshold)


# --------------------------------------------------------------------------- the writer

def _is_fresh(directory: Path) -> bool:
    """True when ``directory`` has no manifest and holds nothing but what a first run that
    died before its first commit leaves (so it may become an index)."""
    if not directory.exists():
        return True
    if not directory.is_dir():
        raise NotAnIndexError('%s is not a folder' % directory)
    names = os.listdir(str(directory))
    if MANIFEST in names:
        return False
    foreign = [n for n in names if not _OWN_FILE.match(n)]
    if foreign:
        raise NotAnIndexError('%s is not an index (no %s) and is not empty (it holds %s): '
                              'give a new or empty folder' % (directory, MANIFEST, escape(sorted(foreign)[0])))
    return True


class Writer:
    """The one process appending to an index: holds ``DIR/lock`` from open to :meth:`close`.

    ``provenance`` and ``dim`` are needed only to create an index (``create=True`` and no
    manifest yet) or to start it over (:meth:`restart`). Nothing is committed before
    :meth:`commit`.
    """

    def __init__(self, directory: PathLike):
        import fcntl

        self.directory = Path(directory)
        fresh = _is_fresh(self.directory)  # raises before anything is written
        if not fresh:
            read_manifest(self.directory)  # not an index / newer / damaged: refuse unwritten
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = open(str(self.directory / LOCK), 'a+')
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self._lock.close()
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise IndexLockedError('another process is writing the index %s (it holds %s); '
                                       'wait for it to finish' % (self.directory, self.directory / LOCK)) from None
            raise
        self._vec = self._rec = None
        self.dirty = False  # changes not committed yet
        try:
            self.manifest: Optional[dict] = None
            self.view: Optional[Index] = None
            if manifest_path(self.directory).exists():
                self.view = open_index(self.directory)
                self.manifest = self.view.manifest
            else:
                self._remove_leftovers()
        except BaseException:
            self.close()
            raise

    # -- state
    @property
    def exists(self) -> bool:
        return self.manifest is not None

    def _remove_leftovers(self) -> None:
        for n in os.listdir(str(self.directory)):
            if n != LOCK and _OWN_FILE.match(n):
                p = self.directory / n
                if p.is_dir():
                    import shutil
                    shutil.rmtree(str(p))
                else:
                    p.unlink()

    def _open_data(self) -> None:
        """Open the current generation's files for appending, cut to the committed lengths."""
        if self._vec is not None:
            return
        m = self.manifest
        vec_name, rec_name = data_names(m['generation'])
        vec_len, rec_len = m['rows'] * m['dim'] * 4, m['records_bytes']
        self._vec = open(str(self.directory / vec_name), 'ab')
        self._rec = open(str(self.directory / rec_name), 'ab')
        for f, length in ((self._vec, vec_len), (self._rec, rec_len)):
            size = os.fstat(f.fileno()).st_size
            if size < length:
                raise DamagedIndexError('%s holds %d bytes, but the manifest commits %d'
                                        % (f.name, size, length))
            if size > length:  # what a killed writer appended after its last commit
                f.truncate(length)
        self._pending_rows = 0
        self._pending_bytes = 0
        self._pending_live = 0

    def create(self, provenance: dict, dim: int) -> None:
        """Start a new, empty index (generation 1 of its files); nothing is committed yet."""
        if not 1 <= dim <= 65536:
            raise ValueError('embedding width %d is outside 1..65536' % dim)
        gen = (self.manifest['generation'] + 1) if self.manifest else 1
        self.manifest = {'format': FORMAT, 'version': VERSION, 'generation': gen, 'dim': int(dim),
                         'rows': 0, 'records_bytes': 0, 'next_id': self.manifest['next_id'] if self.manifest else 0,
                         'live': 0, 'commit': self.manifest['commit'] if self.manifest else 0,
                         'provenance': dict(provenance), 'ann': None}
        self.dirty = True
        self._close_data()
        for n in data_names(gen):
            p = self.directory / n
            if p.exists():
                p.unlink()
        self._open_data()

    def restart(self, provenance: dict, dim: int) -> None:
        """Empty the index under a new provenance (``--rebuild``); takes effect at :meth:`commit`."""
        self._old_generation = self.manifest['generation'] if self.manifest else None
        self.create(provenance, dim)

    # -- changes
    def add(self, vectors: np.ndarray, paths: Sequence[str], sizes: Sequence[int],
            mtimes: Sequence[int]) -> List[int]:
        """Append rows (float32 ``(B, dim)``, normalised here) for ``paths``; returns their new
        ids. ValueError naming the file when a row is not finite or is zero."""
        self._open_data()
        m = self.manifest
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != m['dim'] or v.shape[0] != len(paths):
            raise ValueError('expected %d rows of %d values, got an array of shape %s'
                             % (len(paths), m['dim'], v.shape))
        norms = np.linalg.norm(v, axis=1)
        bad = np.nonzero(~np.isfinite(v).all(axis=1) | ~np.isfinite(norms) | (norms == 0))[0]
        if len(bad):
            raise ValueError('the embedding of %s holds NaN, infinity or only zeros' % escape(paths[bad[0]]))
        v = v / norms[:, None]
        first = m['next_id']
        ids = list(range(first, first + len(paths)))
        lines = ''.join(json.dumps({'id': i, 'path': escape(p), 'size': int(s), 'mtime_ns': int(t)},
                                   ensure_ascii=False) + '\n'
                        for i, p, s, t in zip(ids, paths, sizes, mtimes)).encode('utf-8')
        self._vec.write(np.ascontiguousarray(v, '<f4').tobytes())
        self._rec.write(lines)
        self.dirty = True
        m['next_id'] = first + len(paths)
        m['rows'] += len(paths)
        m['records_bytes'] += len(lines)
        m['live'] += len(paths)
        return ids

    def remove(self, ids: Sequence[int]) -> None:
        """Remove live rows by id (committed at :meth:`commit`)."""
        if not len(ids):
            return
        self._open_data()
        lines = ''.join('{"del": %d}\n' % int(i) for i in ids).encode('utf-8')
        self._rec.write(lines)
        self.dirty = True
        self.manifest['records_bytes'] += len(lines)
        self.manifest['live'] -= len(ids)

    def mark_unreadable(self, path: str, size: int, mtime_ns: int, why: str) -> None:
        """Remember that ``path`` (at this size and mtime) could not be read."""
        self._append_records({'bad': escape(path), 'size': int(size), 'mtime_ns': int(mtime_ns), 'why': why[:500]})

    def forget_unreadable(self, path: str) -> None:
        self._append_records({'bad': escape(path), 'gone': True})

    def _append_records(self, *records) -> None:
        self._open_data()
        lines = ''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in records).encode('utf-8')
        self._rec.write(lines)
        self.dirty = True
        self.manifest['records_bytes'] += len(lines)

    def commit(self) -> None:
        """Make everything added and removed so far durable and visible, atomically."""
        self._open_data()
        for f in (self._vec, self._rec):
            f.flush()
            os.fsync(f.fileno())
        self.manifest['commit'] += 1
        write_manifest(self.directory, self.manifest)
        self.dirty = False
        old = getattr(self, '_old_generation', None)
        if old is not None and old != self.manifest['generation']:
            self._drop_generation(old)
        self._old_generation = None

    def _drop_generation(self, gen: int) -> None:
        for n in data_names(gen):
            try:
                (self.directory / n).unlink()
            except FileNotFoundError:
                pass

    def compact(self) -> bool:
        """Copy the live rows (ids kept) into a new generation and switch to it; True when done.
        Readers holding the old generation open keep reading it."""
        view = open_index(self.directory)
        m = self.manifest
        old_gen = m['generation']
        gen = old_gen + 1
        vec_name, rec_name = data_names(gen)
        self._close_data()
        r = view._rows_state
        live_rows = np.nonzero(view._live)[0]
        with open(str(self.directory / vec_name), 'wb') as vf, open(str(self.directory / rec_name), 'wb') as rf:
            for start in range(0, len(live_rows), 65536):
                sel = live_rows[start:start + 65536]
                vf.write(np.ascontiguousarray(view._vectors[sel], '<f4').tobytes())
                rf.write(''.join(json.dumps({'id': r.ids[i], 'path': escape(r.paths[i]), 'size': r.sizes[i],
                                             'mtime_ns': r.mtimes[i]}, ensure_ascii=False) + '\n'
                                 for i in sel.tolist()).encode('utf-8'))
            rf.write(''.join(json.dumps({'bad': escape(p), 'size': sz, 'mtime_ns': t, 'why': why},
                                        ensure_ascii=False) + '\n'
                             for p, (sz, t, why) in sorted(r.bad.items())).encode('utf-8'))
            for f in (vf, rf):
                f.flush()
                os.fsync(f.fileno())
            rec_bytes = rf.tell()
        m.update(generation=gen, rows=len(live_rows), records_bytes=rec_bytes, live=len(live_rows))
        m['commit'] += 1
        write_manifest(self.directory, m)
        self._drop_generation(old_gen)
        del view
        return True

    def _close_data(self) -> None:
        for f in (self._vec, self._rec):
            if f is not None:
                f.close()
        self._vec = self._rec = None

    def close(self) -> None:
        self._close_data()
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
