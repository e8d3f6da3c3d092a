"""What ``vseimageencoder encode`` writes, written and read: ``EMB.npy`` and its file list
``EMB.files.txt``.
"""
import hashlib
import json
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from vseimageencoder.files.atomic import commit, discard, temp_beside
from vseimageencoder.index.name_escaping import BadEscapeError, escape, unescape

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

MAGIC = '#vseimageencoder-files '
HEADER_SIZE = 1024
VERSION = 2
_NPY_HEADER = 128
_CHUNK_BYTES = 64 << 20


class IndexFileError(ValueError):
    """An ``.npy`` and its file list are missing, damaged or do not belong together; the
    message names the file."""


def files_path(index: PathLike) -> Path:
    """The list of source files beside an index: ``emb.npy`` -> ``emb.files.txt``."""
    index = Path(index)
    stem = index.name[:-4] if index.name.endswith('.npy') else index.name
    return index.with_name(stem + '.files.txt')


def _npy_header(rows: int, cols: int) -> bytes:
    """A .npy v1.0 header of exactly 128 bytes for float32 ``(rows, cols)`` (fixed size, so
    the row count can be written last, over a placeholder)."""
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
    pad = _NPY_HEADER - 10 - len(text) - 1
    if pad < 0:
        raise ValueError('shape too large for the header')
    return b'\x93NUMPY\x01\x00' + struct.pack('<H', _NPY_HEADER - 10) + (text + ' ' * pad + '\n').encode('latin1')


def _files_header(meta: dict) -> bytes:
    line = (MAGIC + json.dumps(meta, sort_keys=True, ensure_ascii=True)).encode('ascii')
    if len(line) > HEADER_SIZE - 1:
        raise ValueError('file list header over %d bytes' % HEADER_SIZE)
    return line + b' ' * (HEADER_SIZE - 1 - len(line)) + b'\n'


class PairWriter:
    """Streams rows to a temporary ``.npy`` and names to a temporary file list beside
    ``out``; :meth:`commit` moves both into place, :meth:`abort` removes them. Memory does
    not grow with the number of rows.

    ``EMB.npy`` is a plain float32 ``(N, D)`` array. ``EMB.files.txt`` starts with a header
    line of exactly :data:`HEADER_SIZE` bytes, ``#vseimageencoder-files {"version": 2,
    "rows": N, "dim": D, "rows_sha256": ..., "provenance": {...}}``, then one
    :func:`~vseimageencoder.index.name_escaping.escape`-d name per row. ``provenance``
    (checkpoint sha256, arch, embed_size, resize, precision) goes into that header.
    """

    def __init__(self, out: PathLike, dim: int, provenance: Optional[dict] = None):
        self.out = Path(out)
        self.names_out = files_path(self.out)
        self.dim, self.provenance = int(dim), provenance
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.rows = 0
        self._hash = hashlib.sha256()
        self._tmp = []
        try:
            for target in (self.out, self.names_out):
                tmp = temp_beside(target)
                self._tmp.append((open(tmp, 'wb'), tmp))
            self._rows_f, self._names_f = self._tmp[0][0], self._tmp[1][0]
            self._rows_f.write(_npy_header(0, self.dim))
            self._names_f.write(_files_header(self._meta()))
        except BaseException:
            self.abort()
            raise

    def _meta(self) -> dict:
        return {'version': VERSION, 'rows': self.rows, 'dim': self.dim,
                'rows_sha256': self._hash.hexdigest(), 'provenance': self.provenance}

    def write(self, rows: np.ndarray, names) -> None:
        """Append float32 ``(B, dim)`` rows and the file of each."""
        data = np.ascontiguousarray(rows, '<f4')
        if data.ndim != 2 or data.shape[1] != self.dim or data.shape[0] != len(names):
            raise ValueError('expected %d rows of %d values, got shape %s' % (len(names), self.dim, data.shape))
        raw = data.tobytes()
        self._rows_f.write(raw)
        self._hash.update(raw)
        self._names_f.write(''.join(escape(n) + '\n' for n in names).encode('utf-8'))
        self.rows += len(names)

    def commit(self) -> int:
        """Finish both files and move them into place (file list first: a reader that sees
        the new list with the old array refuses the pair). Returns the row count."""
        try:
            self._rows_f.seek(0)
            self._rows_f.write(_npy_header(self.rows, self.dim))
            self._names_f.seek(0)
            self._names_f.write(_files_header(self._meta()))
            for f, _ in self._tmp:
                f.close()
            commit(self._tmp[1][1], self.names_out)
            commit(self._tmp[0][1], self.out)
        except BaseException:
            self.abort()
            raise
        self._tmp = []
        return self.rows

    def abort(self) -> None:
        for f, tmp in self._tmp:
            f.close()
            discard(tmp)
        self._tmp = []


@dataclass
class EmbeddingPair:
    """A loaded ``.npy`` and its file list: ``rows`` float (N, D) memory-mapped, ``files``
    the names (``os.fsdecode`` form), ``provenance`` from the header (None for old lists)."""
    rows: np.ndarray
    files: List[str]
    path: Path
    provenance: Optional[dict] = field(default=None)

    @property
    def dim(self) -> int:
        return int(self.rows.shape[1])

    def __len__(self) -> int:
        return int(self.rows.shape[0])


def _map_npy(path: Path):
    """Memory-map an .npy after checking its header against the file size; IndexFileError
    names the file for anything that is not a 2-d float array of the size it declares."""
    from numpy.lib import format as npformat

    try:
        with open(str(path), 'rb') as f:
            version = npformat.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npformat.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = npformat.read_array_header_2_0(f)
            else:
                raise ValueError('unknown .npy version %s' % (version,))
            offset = f.tell()
            size = os.fstat(f.fileno()).st_size
    except (ValueError, OSError, EOFError, OverflowError, SyntaxError) as e:
        raise IndexFileError('%s is not a readable .npy array (%s)' % (path, e)) from None
    if len(shape) != 2 or dtype.kind != 'f' or dtype.hasobject:
        raise IndexFileError('%s holds a %s array of shape %s; expected float embeddings (N, D)'
                             % (path, dtype, shape))
    if fortran:
        raise IndexFileError('%s is stored in Fortran order; save it C-contiguous' % path)
    n, d = int(shape[0]), int(shape[1])
    want = n * d * dtype.itemsize
    if n == 0 or d == 0:
        raise IndexFileError('%s holds no embeddings (shape %s): nothing to search' % (path, shape))
    if want != size - offset:
        raise IndexFileError('%s declares %d rows of %d values (%d bytes) but holds %d bytes of data: '
                             'damaged or not what its header says' % (path, n, d, want, size - offset))
    return np.memmap(str(path), dtype=dtype, mode='r', offset=offset, shape=(n, d)), offset


def _read_files(names: Path):
    """``(meta or None, lines)`` of a file list."""
    try:
        raw = names.read_bytes()
    except OSError as e:
        raise IndexFileError('cannot read %s: %s' % (names, e)) from None
    if raw.startswith(MAGIC.encode('ascii')):
        head, _, body = raw.partition(b'\n')
        try:
            meta = json.loads(head[len(MAGIC):].decode('ascii'))
            if not isinstance(meta, dict) or meta.get('version') != VERSION:
                raise ValueError('version %r' % (meta.get('version') if isinstance(meta, dict) else meta))
            int(meta['rows']), int(meta['dim']), str(meta['rows_sha256'])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise IndexFileError('%s has a damaged header (%s)' % (names, e)) from None
        try:
            text = body.decode('utf-8')
        except UnicodeDecodeError as e:
            raise IndexFileError('%s is not UTF-8 (%s): damaged' % (names, e)) from None
        if text and not text.endswith('\n'):
            raise IndexFileError('%s ends inside a line: truncated' % names)
        lines = text[:-1].split('\n') if text else []
        try:
            return meta, [unescape(line) for line in lines]
        except BadEscapeError as e:
            raise IndexFileError('%s: a damaged line (%s)' % (names, e)) from None
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError as e:
        raise IndexFileError('cannot read %s: %s' % (names, e)) from None
    return None, text.splitlines()


def load_pair(path: PathLike, verify: bool = True) -> EmbeddingPair:
    """Open ``path`` (.npy) and its file list; raise :class:`IndexFileError` naming the file
    when either is missing or damaged, the array is not 2-d float or holds no rows, the
    counts differ, a row is not finite, or (``verify``) the two come from different runs
    (``rows_sha256``, the sha256 of the array's row bytes, differs). File lists without the
    header (before version 2) are read as plain lines, checked by row count only."""
    path = Path(path)
    names = files_path(path)
    if not path.is_file():
        raise IndexFileError('no index file %s (write one with: vseimageencoder encode PHOTOS -o %s)'
                             % (path, path))
    if not names.is_file():
        raise IndexFileError('index %s has no list of files beside it: %s is missing' % (path, names))
    rows, _ = _map_npy(path)
    meta, files = _read_files(names)
    if len(files) != rows.shape[0]:
        raise IndexFileError('%s has %d rows but %s lists %d files; they must come from the same '
                             'encode run' % (path, rows.shape[0], names, len(files)))
    if meta is not None and int(meta['dim']) != rows.shape[1]:
        raise IndexFileError('%s holds %d-d rows but %s was written for %d-d ones: not from the same '
                             'encode run' % (path, rows.shape[1], names, meta['dim']))
    digest = hashlib.sha256()
    step = max(1, _CHUNK_BYTES // (rows.shape[1] * rows.dtype.itemsize))
    for start in range(0, rows.shape[0], step):
        block = np.asarray(rows[start:start + step])
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            bad = start + int(np.nonzero(~finite)[0][0])
            raise IndexFileError('%s: row %d (%s) holds NaN or infinity' % (path, bad, escape(files[bad])))
        if verify and meta is not None:
            digest.update(np.ascontiguousarray(block, '<f4').tobytes())
    if meta is None:
        logger.warning('%s was written by an older vseimageencoder: it cannot be checked against %s '
                       '(run encode again to get a checked pair)', names, path)
    elif verify and digest.hexdigest() != meta['rows_sha256']:
        raise IndexFileError('%s and %s are not from the same encode run: the rows have sha256 %s, '
                             'the file list was written for rows of sha256 %s'
                             % (path, names, digest.hexdigest(), meta['rows_sha256']))
    return EmbeddingPair(rows, files, path, meta.get('provenance') if meta else None)
