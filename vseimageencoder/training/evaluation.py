"""Encoding a split through the same paths users get (``encode``'s batch embedding, the
vocabulary and the text tower) and scoring it by VSE++'s protocol (:mod:`.metrics`).
"""
import logging
import time
from typing import Callable, Optional, Sequence

import numpy as np

from vseimageencoder.training.data import CaptionedSplit, DataError
from vseimageencoder.training.metrics import evaluate_embeddings

logger = logging.getLogger(__name__)


def encode_image_files(model: Callable, paths: Sequence, batch_size: int = 32,
                       resize: Optional[str] = None, readers: Optional[int] = None,
                       progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
    """float32 ``(len(paths), embed_size)``: ``model`` (float32 ``(B, 3, 224, 224)`` tensor ->
    ``(B, embed_size)`` tensor) applied to the transformed images, in order.

    The images go through :func:`vseimageencoder.pipeline.embed_files.embed_files`, as ``encode``'s
    do (``readers``: None for one lane per core, 0 to read on this thread). Unlike ``encode``
    (which skips unreadable files), evaluation needs every image: an unreadable one is a
    :class:`DataError` naming it, and the run stops there.
    """
    from vseimageencoder.pipeline.embed_files import embed_files

    paths = list(paths)
    out = []

    def write(rows, positions):
        out.append(np.asarray(rows, dtype=np.float32))

    def unreadable(pos, err):
        raise DataError('image %s cannot be evaluated: %s' % (paths[pos], getattr(err, 'reason', err)))

    def report(done, skipped):
        if progress:
            progress(done)

    embed_files(model, paths, write, batch_size, resize, readers, unreadable, report)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def encode_features(model: Callable, features: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """float32 ``(N, embed_size)``: a precomputed-feature tower over ``(N, img_dim)`` rows."""
    import torch

    # np.array copies: the rows may be a read-only memory map, which torch will not wrap.
    rows = [np.asarray(model(torch.from_numpy(np.array(features[a:a + batch_size], dtype=np.float32))),
                       np.float32)
            for a in range(0, len(features), batch_size)]
    return np.concatenate(rows)


def encode_captions(encode_batch: Callable[[list], np.ndarray], captions: Sequence[str],
                    batch_size: int = 256) -> np.ndarray:
    """float32 ``(len(captions), embed_size)`` from ``encode_batch`` (a list of str ->
    ``(b, embed_size)`` array), a batch at a time. Captions of similar length share a batch
    (less padding for the GRU); rows come back in input order."""
    order = sorted(range(len(captions)), key=lambda j: len(captions[j]))
    out = None
    for a in range(0, len(order), batch_size):
        idx = order[a:a + batch_size]
        emb = np.asarray(encode_batch([captions[j] for j in idx]), np.float32)
        if out is None:
            out = np.empty((len(captions), emb.shape[1]), np.float32)
        out[idx] = emb
    return out


def evaluate_split(split: CaptionedSplit, image_model: Callable, caption_encoder: Callable,
                   folds: int = 1, batch_size: int = 128, resize: Optional[str] = None,
                   readers: Optional[int] = None, image_progress=None) -> dict:
    """Encode ``split`` (image files or features) and its captions, then score it.

    :param image_model: tensor batch -> embedding tensor (the tower, or
        :class:`~vseimageencoder.model.inference.InferenceTower`).
    :param caption_encoder: list of str -> float32 ``(b, embed_size)`` array.
    :return: :func:`.metrics.evaluate_embeddings`' result, with ``seconds`` for the encoding
        and the ranking added.
    """
    t0 = time.monotonic()
    if split.precomputed:
        img = encode_features(image_model, split.features)
    else:
        split.check_files()
        img = encode_image_files(image_model, split.paths, batch_size, resize, readers, image_progress)
    cap = encode_captions(caption_encoder, split.captions, max(batch_size, 128))
    t1 = time.monotonic()
    result = evaluate_embeddings(img, cap, folds)
    t2 = time.monotonic()
    result['seconds'] = {'encode': t1 - t0, 'rank': t2 - t1}
    return result
