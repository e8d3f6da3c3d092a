"""Ranking what ``vseimageencoder encode`` wrote (no jina, no torch).

An index is the pair the encode command writes: ``NAME.npy``, float32 ``(N, D)`` with one
embedding per row, and ``NAME.files.txt``, the file each row came from, one per line.
:func:`load_index` reads and checks both; :func:`top_k` ranks rows by cosine similarity.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np

PathLike = Union[str, os.PathLike]


class IndexFileError(ValueError):
    """An index (.npy and .files.txt) is missing or inconsistent; the message names the file."""


def files_path(index: PathLike) -> Path:
    """The list of source files beside an index: ``emb.npy`` -> ``emb.files.txt``."""
    index = Path(index)
    stem = index.name[:-4] if index.name.endswith('.npy') else index.name
    return index.with_name(stem + '.files.txt')


@dataclass(frozen=True)
class EmbeddingIndex:
    rows: np.ndarray  # (N, D) float32, memory-mapped
    files: List[str]
    path: Path

    @property
    def dim(self) -> int:
        return int(self.rows.shape[1])

    def __len__(self) -> int:
        return int(self.rows.shape[0])


def load_index(path: PathLike) -> EmbeddingIndex:
    """Open ``path`` (.npy) and its ``.files.txt``; raise :class:`IndexFileError` naming the
    file when either is missing, the array is not 2-d float, or the counts differ."""
    path = Path(path)
    names = files_path(path)
    if not path.is_file():
        raise IndexFileError('no index file %s (write one with: vseimageencoder encode PHOTOS -o %s)'
                             % (path, path))
    if not names.is_file():
        raise IndexFileError('index %s has no list of files beside it: %s is missing' % (path, names))
    try:
        rows = np.load(str(path), mmap_mode='r', allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise IndexFileError('%s is not a readable .npy array (%s)' % (path, e)) from None
    if rows.ndim != 2 or rows.dtype.kind != 'f':
        raise IndexFileError('%s holds a %s array of shape %s; expected float embeddings (N, D)'
                             % (path, rows.dtype, rows.shape))
    try:
        files = names.read_text(encoding='utf-8').splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise IndexFileError('cannot read %s: %s' % (names, e)) from None
    if len(files) != rows.shape[0]:
        raise IndexFileError('%s has %d rows but %s lists %d files; they must come from the same '
                             'encode run' % (path, rows.shape[0], names, len(files)))
    return EmbeddingIndex(rows, files, path)


def cosine_scores(rows: np.ndarray, queries: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """float32 ``(Q, N)`` cosine similarities of each query to each row, read in chunks of
    rows so a memory-mapped index is never copied whole."""
    q = np.asarray(queries, dtype=np.float32)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    out = np.empty((q.shape[0], rows.shape[0]), np.float32)
    for start in range(0, rows.shape[0], chunk):
        block = np.asarray(rows[start:start + chunk], dtype=np.float32)
        norms = np.maximum(np.linalg.norm(block, axis=1), 1e-12)
        out[:, start:start + len(block)] = (q @ block.T) / norms
    return out


def top_k(rows: np.ndarray, queries: np.ndarray, k: int) -> List[List[Tuple[float, int]]]:
    """For each query, the ``k`` best rows as ``(cosine, row)`` pairs, best first; equal
    scores keep row order."""
    if k < 1:
        raise ValueError('k must be at least 1, got %d' % k)
    scores = cosine_scores(rows, queries)
    n = scores.shape[1]
    k = min(k, n)
    result = []
    for s in scores:
        cand = np.argpartition(-s, k - 1)[:k] if k < n else np.arange(n)
        # Rows tied with the k-th score may be left out by argpartition: take them all back
        # before ordering, so ties resolve by row order.
        cand = np.union1d(cand, np.nonzero(s >= s[cand].min())[0])
        order = np.lexsort((cand, -s[cand]))[:k]
        result.append([(float(s[cand[i]]), int(cand[i])) for i in order])
    return result


def format_hits(hits: Sequence[Tuple[float, int]], files: Sequence[str]) -> List[str]:
    """``score<TAB>file`` lines, the score with 4 decimals."""
    return ['%.4f\t%s' % (score, files[row]) for score, row in hits]
