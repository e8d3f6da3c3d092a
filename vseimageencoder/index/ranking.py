"""Ranking the ``.npy`` pair ``vseimageencoder encode`` wrote by cosine similarity (no jina, no
torch); the on-disk index folder is :mod:`vseimageencoder.index`.
"""
import os
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np

from vseimageencoder.index import exact as scan
from vseimageencoder.index.name_escaping import escape
from vseimageencoder.index.npy_pair import EmbeddingPair as EmbeddingIndex  # noqa: F401  (the old name)
from vseimageencoder.index.npy_pair import IndexFileError, files_path, load_pair  # noqa: F401

PathLike = Union[str, os.PathLike]


def load_index(path: PathLike) -> EmbeddingIndex:
    """Open ``path`` (.npy) and its ``.files.txt``; raise :class:`IndexFileError` naming the
    file when either is missing or damaged, the array is not 2-d float, holds no rows or a
    row that is not finite, the counts differ, or the two are not from the same run."""
    return load_pair(Path(path))


def cosine_scores(rows: np.ndarray, queries: np.ndarray, chunk: int = scan.CHUNK) -> np.ndarray:
    """float32 ``(Q, N)`` cosine similarities of each query to each row, read in chunks of
    rows so a memory-mapped index is never copied whole."""
    q = np.asarray(queries, dtype=np.float32)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    return scan.cosine_scores(rows, q, normalize_rows=True, chunk=chunk)


def top_k(rows: np.ndarray, queries: np.ndarray, k: int) -> List[List[Tuple[float, int]]]:
    """For each query, the ``k`` best rows as ``(cosine, row)`` pairs, best first; equal
    scores keep row order."""
    if k < 1:
        raise ValueError('k must be at least 1, got %d' % k)
    return scan.top_k(cosine_scores(rows, queries), k)


def format_hit(score: float, name: str) -> str:
    """``score<TAB>file``, the score with 4 decimals, the name escaped (one line, no
    terminal control sequences; see :func:`vseimageencoder.index.name_escaping.escape`)."""
    return '%.4f\t%s' % (score, escape(name))


def format_hits(hits: Sequence[Tuple[float, int]], files: Sequence[str]) -> List[str]:
    """``score<TAB>file`` lines for ``(score, row)`` hits."""
    return [format_hit(score, files[row]) for score, row in hits]
