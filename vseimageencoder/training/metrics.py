"""VSE++'s retrieval protocol on embeddings: ranks, R@K, medr, meanr, rsum, 5-fold (numpy only)."""
import math
from typing import Dict, Optional, Tuple

import numpy as np

CAPTIONS_PER_IMAGE = 5
RECALLS = (1, 5, 10)
#: Scores held at once per block of images (float32): 5,000 x 25,000 goes in 10 blocks.
DEFAULT_CHUNK_BYTES = 50 << 20


def check_embeddings(images: np.ndarray, captions: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Both as float32 C arrays after checking the ``(N, D)`` / ``(5N, D)`` layout; ValueError
    names the shapes at fault."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    captions = np.ascontiguousarray(captions, dtype=np.float32)
    if images.ndim != 2 or captions.ndim != 2 or images.shape[1] != captions.shape[1]:
        raise ValueError('expected (N, D) image and (5N, D) caption embeddings, got %s and %s'
                         % (images.shape, captions.shape))
    if len(images) == 0:
        raise ValueError('no images to evaluate')
    if len(captions) != CAPTIONS_PER_IMAGE * len(images):
        raise ValueError('%d captions for %d images; the protocol needs exactly %d per image'
                         % (len(captions), len(images), CAPTIONS_PER_IMAGE))
    return images, captions


def _rows_per_block(width: int, chunk_bytes: int) -> int:
    return max(1, chunk_bytes // (4 * max(width, 1)))


def _matmul_t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float32 ``a @ b.T``: torch's GEMM when torch is there (faster than numpy's bundled
    BLAS), else numpy's."""
    try:
        import torch
    except ImportError:  # the protocol needs no model; numpy alone will do
        return a @ b.T
    return (torch.from_numpy(a) @ torch.from_numpy(b).T).numpy()


def retrieval_ranks(images: np.ndarray, captions: np.ndarray,
                    chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Tuple[np.ndarray, np.ndarray]:
    """int64 ``(N,)`` image-to-text and ``(5N,)`` text-to-image 0-based ranks, in one pass.

    ``images`` ``(N, D)`` and ``captions`` ``(5N, D)`` (captions ``5i .. 5i+4`` describe image
    ``i``), L2-normalised. Image to text: the rank of the best-placed of its five captions;
    text to image: the rank of the caption's image. Ties are broken against the query: a
    rank is the number of wrong candidates scoring at least as high as the true one, so a
    model giving every pair the same score ranks last, not first.

    Each block of images is scored against every caption once; the block gives its images'
    i2t ranks and adds its images' votes to every caption's t2i count. A caption's own score
    (the threshold of its t2i rank) comes from a small product of each image with its five
    captions, computed first.
    """
    images, captions = check_embeddings(images, captions)
    n, k = len(images), CAPTIONS_PER_IMAGE
    step = _rows_per_block(len(captions), chunk_bytes)
    offsets = np.arange(k)
    own = np.empty(len(captions), np.float32)
    for a in range(0, n, step):
        b = min(n, a + step)
        block = _matmul_t(images[a:b], captions[a * k:b * k])  # (c, 5c)
        rows = np.arange(b - a)[:, None]
        own[a * k:b * k] = block[rows, rows * k + offsets].reshape(-1)
    i2t = np.empty(n, dtype=np.int64)
    t2i = np.zeros(len(captions), dtype=np.int64)
    for a in range(0, n, step):
        b = min(n, a + step)
        scores = _matmul_t(images[a:b], captions)  # (c, 5N)
        rows = np.arange(b - a)[:, None]
        true_cols = (np.arange(a, b)[:, None] * k) + offsets  # (c, 5)
        best = scores[rows, true_cols].max(axis=1)
        scores[rows, true_cols] = -np.inf  # an image's own captions are never wrong candidates
        i2t[a:b] = np.count_nonzero(scores >= best[:, None], axis=1)
        t2i += np.count_nonzero(scores >= own[None, :], axis=0)
    return i2t, t2i


def i2t_ranks(images: np.ndarray, captions: np.ndarray,
              chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> np.ndarray:
    """int64 ``(N,)``: for each image, the 0-based rank of its best-placed true caption."""
    return retrieval_ranks(images, captions, chunk_bytes)[0]


def t2i_ranks(images: np.ndarray, captions: np.ndarray,
              chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> np.ndarray:
    """int64 ``(5N,)``: for each caption, the 0-based rank of its image among all images."""
    return retrieval_ranks(images, captions, chunk_bytes)[1]


def summarize(ranks: np.ndarray) -> Dict[str, float]:
    """``r1``, ``r5``, ``r10`` (percent of ranks below K), ``medr`` = floor(median) + 1 and
    ``meanr`` = mean + 1 (1-based), of 0-based ranks."""
    ranks = np.asarray(ranks)
    out = {'r%d' % k: 100.0 * float(np.count_nonzero(ranks < k)) / len(ranks) for k in RECALLS}
    out['medr'] = float(math.floor(np.median(ranks)) + 1)
    out['meanr'] = float(ranks.mean() + 1)
    return out


def fold_bounds(n_images: int, folds: int):
    """``folds`` consecutive image ranges ``[a, b)`` covering ``0 .. n_images`` (sizes differ
    by at most one; COCO's 5,000 test images give five folds of 1,000)."""
    if folds < 1:
        raise ValueError('folds must be at least 1, got %d' % folds)
    if n_images < folds:
        raise ValueError('%d images cannot be cut into %d folds' % (n_images, folds))
    edges = [round(i * n_images / folds) for i in range(folds + 1)]
    return list(zip(edges[:-1], edges[1:]))


def evaluate_embeddings(images: np.ndarray, captions: np.ndarray, folds: int = 1,
                        chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Dict:
    """The protocol's figures.

    :param folds: 1 for all images at once (Flickr30K 1K, COCO 5K); 5 for COCO's 1K protocol:
        every metric is computed within each fold (its images and their captions) and the
        folds' figures are averaged; ``rsum`` is the sum of the six averaged recalls.
    :return: ``{'i2t': {r1, r5, r10, medr, meanr}, 't2i': {...}, 'rsum', 'images',
        'captions', 'folds', 'ranks': {'i2t': int64 (N,), 't2i': int64 (5N,)}}``; with
        folds, each rank is the rank within its fold.
    """
    images, captions = check_embeddings(images, captions)
    per_fold, i2t_all, t2i_all = [], [], []
    for a, b in fold_bounds(len(images), folds):
        im, cap = images[a:b], captions[a * CAPTIONS_PER_IMAGE:b * CAPTIONS_PER_IMAGE]
        r_i2t, r_t2i = retrieval_ranks(im, cap, chunk_bytes)
        i2t_all.append(r_i2t)
        t2i_all.append(r_t2i)
        per_fold.append((summarize(r_i2t), summarize(r_t2i)))
    result = {}
    for side, idx in (('i2t', 0), ('t2i', 1)):
        keys = per_fold[0][idx].keys()
        result[side] = {k: float(np.mean([f[idx][k] for f in per_fold])) for k in keys}
    result['rsum'] = rsum(result)
    result['images'] = int(len(images))
    result['captions'] = int(len(captions))
    result['folds'] = int(folds)
    result['ranks'] = {'i2t': np.concatenate(i2t_all), 't2i': np.concatenate(t2i_all)}
    return result


def rsum(result: Dict) -> float:
    """The sum of the six recalls (R@1, R@5, R@10 both ways) of a result."""
    return float(sum(result[side]['r%d' % k] for side in ('i2t', 't2i') for k in RECALLS))


def format_table(result: Dict, title: Optional[str] = None) -> str:
    """The figures as a small plain-text table."""
    lines = []
    if title:
        lines.append(title)
    lines.append('%-14s %7s %7s %7s %7s %9s' % ('', 'R@1', 'R@5', 'R@10', 'medr', 'meanr'))
    for side, name in (('i2t', 'image->text'), ('t2i', 'text->image')):
        r = result[side]
        lines.append('%-14s %7.2f %7.2f %7.2f %7.1f %9.2f' % (name, r['r1'], r['r5'], r['r10'],
                                                              r['medr'], r['meanr']))
    lines.append('rsum %.2f  (%d images, %d captions, %s)' % (
        result['rsum'], result['images'], result['captions'],
        '%d folds averaged' % result['folds'] if result['folds'] > 1 else 'all at once'))
    return '\n'.join(lines)
