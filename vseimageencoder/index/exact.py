"""The exact scan: cosine similarity of queries to every row, and the best ``k`` (numpy only)."""
from typing import List, Optional, Tuple

import numpy as np

#: Rows scored per step, so a memory-mapped matrix is never copied whole.
CHUNK = 65536


class NonFiniteRowError(ValueError):
    """A stored row holds NaN or infinity; ``row`` says which."""

    def __init__(self, message: str, row: int):
        super().__init__(message)
        self.row = row


def normalize_queries(queries, dim: Optional[int] = None) -> np.ndarray:
    """float32 ``(Q, D)`` rows of unit norm; ValueError naming the shape, dtype or fault."""
    q = np.asarray(queries)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.dtype.kind not in 'fiu':
        raise ValueError('queries of shape %s and dtype %s: expected float32 (Q, D)' % (q.shape, q.dtype))
    if dim is not None and q.shape[1] != dim:
        raise ValueError('queries are %d-d, the index holds %d-d embeddings' % (q.shape[1], dim))
    q = q.astype(np.float32)
    if not np.isfinite(q).all():
        raise ValueError('a query holds NaN or infinity')
    norms = np.linalg.norm(q, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError('a query is the zero vector; it has no direction to search')
    return q / norms


def cosine_scores(rows: np.ndarray, queries: np.ndarray, normalize_rows: bool = True,
                  chunk: int = CHUNK) -> np.ndarray:
    """float32 ``(Q, N)``: each (unit) query against each row. ``normalize_rows`` divides by
    the row norms (rows stored unnormalised); a row that is not finite raises
    :class:`NonFiniteRowError` with its number."""
    out = np.empty((queries.shape[0], rows.shape[0]), np.float32)
    for start in range(0, rows.shape[0], chunk):
        block = np.asarray(rows[start:start + chunk], dtype=np.float32)
        s = queries @ block.T
        if normalize_rows:
            s /= np.maximum(np.linalg.norm(block, axis=1), 1e-12)
        if not np.isfinite(s).all():
            bad_rows = np.nonzero(~np.isfinite(block).all(axis=1))[0]
            if not len(bad_rows):  # finite but so large the products overflow
                bad_rows = np.nonzero(~np.isfinite(s).all(axis=0))[0]
            bad = start + int(bad_rows[0])
            raise NonFiniteRowError('row %d holds NaN or infinity' % bad, bad)
        out[:, start:start + len(block)] = s
    return out


def top_k(scores: np.ndarray, k: int, valid: Optional[np.ndarray] = None) -> List[List[Tuple[float, int]]]:
    """For each row of ``scores`` ``(Q, N)``, the ``k`` best columns as ``(score, column)``,
    best first; equal scores keep column order. ``valid`` (bool ``(N,)``) leaves the other
    columns out, so fewer than ``k`` come back when fewer are valid."""
    if k < 1:
        raise ValueError('k must be at least 1, got %d' % k)
    n = scores.shape[1]
    cols = np.arange(n) if valid is None else np.nonzero(valid)[0]
    result = []
    for s_all in scores:
        s = s_all[cols]
        m = len(s)
        kk = min(k, m)
        if kk == 0:
            result.append([])
            continue
        cand = np.argpartition(-s, kk - 1)[:kk] if kk < m else np.arange(m)
        # Entries tied with the k-th score may be left out by argpartition: take them all
        # back before ordering, so ties resolve by column order.
        cand = np.union1d(cand, np.nonzero(s >= s[cand].min())[0])
        order = np.lexsort((cand, -s[cand]))[:kk]
        result.append([(float(s[cand[i]]), int(cols[cand[i]])) for i in order])
    return result
