"""Search over an index by caption, by photo or by an indexed image: the logic the web app
serves, in plain Python (no web framework).
"""
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from vseimageencoder.serve.batcher import Batcher
from vseimageencoder.serve.errors import BadRequest, NotFound

logger = logging.getLogger(__name__)

#: Results per query when the request does not say.
DEFAULT_K = 20
#: The most results one query may ask for.
MAX_K = 500
#: The longest caption accepted, in characters (VSE++ captions are a sentence or two).
MAX_CAPTION_CHARS = 1000


def parse_k(raw: Optional[str], default: int = DEFAULT_K, limit: int = MAX_K) -> int:
    """The ``k`` query parameter as an int in ``1..limit`` (``default`` when absent).

    :raises BadRequest: naming the value when it is not a positive integer or above ``limit``.
    """
    if raw is None:
        return default
    text = raw.strip()
    if not text.isdigit() or not text.isascii():
        raise BadRequest('k must be a positive integer (number of results), got %r' % raw[:40])
    k = int(text)
    if k < 1:
        raise BadRequest('k must be at least 1, got %d' % k)
    if k > limit:
        raise BadRequest('k=%d is above this server\'s limit of %d results' % (k, limit))
    return k


def check_caption(raw: Optional[str], limit: int = MAX_CAPTION_CHARS) -> str:
    """The caption to search with, stripped; BadRequest when missing, empty or too long."""
    if raw is None:
        raise BadRequest('no caption: give one as ?q=CAPTION')
    caption = raw.strip()
    if not caption:
        raise BadRequest('the caption is empty: type a few words describing the photo')
    if len(caption) > limit:
        raise BadRequest('the caption is %d characters long; at most %d are accepted'
                         % (len(caption), limit))
    return caption


def parse_id(raw: str) -> int:
    """An image id from a URL segment; NotFound (not BadRequest: it names no resource)
    for anything but a plain non-negative integer."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound('no indexed image has id %r' % raw[:40])
    return int(raw)


@dataclass(frozen=True)
class Hit:
    """One result: the row's stable ``id``, its ``file`` (escaped to one printable line as
    the ``search`` command prints it: :func:`vseimageencoder.index.escape`) and its cosine
    ``score``."""
    id: int
    file: str
    score: float


class SearchService:
    """The towers and the index behind ``vseimageencoder serve``.

    Loads both towers of one checkpoint once and answers through one worker thread
    (:mod:`.batcher`) with the ``search`` command's answers: the same query vector against
    the same index call, so the same files with the same scores.

    :param index_dir: an index folder (``vseimageencoder index``).
    :param model_path: the checkpoint the index was built with (file or folder); None: the
        one the index records, if it is still there, else ``pretrained`` (as ``search`` does).
    :param vocab_path: its vocabulary (None: beside the checkpoint).
    :param device: torch device of both towers.
    :param precision: arithmetic of both towers (``fp32`` faithful, ``bf16``, ``fp16``, ``auto``).
    :param refresh_seconds: how often (at most) the worker looks for a newer index commit,
        so a ``vseimageencoder index`` run beside the server shows up without a restart;
        0 never looks.
    :param max_batch: the most queries answered in one pass of a tower and the index.
    :param fuse: compile the image tower's backbone with oneDNN Graph fusion for one photo a
        pass (:meth:`~vseimageencoder.model.inference.InferenceTower.fuse`; costs time at
        start, CPU only), the size of a lone query's batch; passes of several photos (queries
        that arrived together) run the same weights unfused. None (the default): when the
        image tower runs ``bf16`` or ``fp16``. Results are the same either way, within
        cosine 0.999 of the unfused tower's (checked at start; fusion is dropped otherwise).
    """

    def __init__(self, index_dir, model_path=None, vocab_path=None, device: str = 'cpu',
                 precision: str = 'fp32', refresh_seconds: float = 2.0, max_batch: int = 64,
                 fuse: Optional[bool] = None):
        from vseimageencoder.encoders import ImageEncoder, TextEncoder
        from vseimageencoder.index import open_index
        from vseimageencoder.index import provenance as prov

        self.index_dir = Path(index_dir)
        self._ix = open_index(self.index_dir)
        provenance = self._ix.provenance or {}
        if model_path is None:
            model_path = prov.default_model_path(provenance)
        self.text = TextEncoder(model_path, vocab_path, precision, device)
        prov.check_checkpoint(self.index_dir, provenance, self.text.checkpoint_path,
                              remedy='its embeddings cannot be compared; serve it with the same --model-path')
        prov.check_width(self.index_dir, self._ix.dim, self.text.checkpoint_path, self.text.embed_size)
        kwargs = {'resize': provenance['resize']} if provenance.get('resize') else {}
        self.image = ImageEncoder(model_path, precision=precision, device=device, **kwargs)
        self.image.require_backbone('serving photo queries')
        # Fused here, on the thread count the worker will use (torch's threads are per process).
        self.fused = self.image.fuse(1, fuse)
        if self.fused:
            logger.info('the image tower runs fused for single photo queries (oneDNN Graph)')
        self.resize = self.image.resize
        from PIL import Image
        Image.init()  # every plugin registered, so reading with a list of formats finds them all
        self._lock = threading.Lock()  # the index: searched by the worker, read by requests
        self._refresh_seconds = refresh_seconds
        self._last_refresh = time.monotonic()
        self._batcher = Batcher(self._run_batch, max_batch=max_batch)
        logger.info('%s', self.text.describe())
        logger.info('%s', self.image.describe())

    # ------------------------------------------------------------------ queries

    def search_caption(self, caption: str, k: int) -> List[Hit]:
        """The ``k`` indexed images nearest to ``caption`` (checked with :func:`check_caption`)."""
        return self._batcher(('caption', check_caption(caption), k))

    def search_pixels(self, pixels: np.ndarray, k: int) -> List[Hit]:
        """The ``k`` indexed images nearest to a transformed photo, float32 ``(3, 224, 224)``
        (:func:`~vseimageencoder.serve.uploads.upload_pixels`)."""
        return self._batcher(('pixels', pixels, k))

    def similar(self, image_id: int, k: int) -> List[Hit]:
        """The ``k`` indexed images nearest to indexed image ``image_id`` (itself first)."""
        return self._batcher(('id', image_id, k))

    def submit(self, kind: str, value, k: int):
        """Queue a query without waiting: a ``concurrent.futures.Future`` of its hits
        (``kind``: ``'caption'``, ``'pixels'`` or ``'id'``). For asynchronous callers."""
        if kind == 'caption':
            value = check_caption(value)
        return self._batcher.submit((kind, value, k))

    def file(self, image_id: int) -> Path:
        """The file of a live id; NotFound otherwise. The only way the server finds a file."""
        with self._lock:
            try:
                return Path(self._ix.file(image_id))
            except (KeyError, IndexError):
                raise NotFound('no indexed image has id %d' % image_id) from None

    def stats(self) -> Dict[str, object]:
        """``{'images': live rows, 'dim': width}`` of the newest commit (looked for here too)."""
        with self._lock:
            self._maybe_refresh()
            return {'images': len(self._ix), 'dim': int(self._ix.dim)}

    def close(self):
        self._batcher.close()

    # ------------------------------------------------------------------ the worker

    def _run_batch(self, items: Sequence[Tuple[str, object, int]]) -> list:
        """Vectors for every query of the batch (one pass per tower), then one index call
        per distinct ``k``. Runs on the worker thread only."""
        from vseimageencoder.index import escape

        vectors: List[Optional[np.ndarray]] = [None] * len(items)
        results: list = [None] * len(items)
        captions = [i for i, (kind, _, _) in enumerate(items) if kind == 'caption']
        photos = [i for i, (kind, _, _) in enumerate(items) if kind == 'pixels']
        if captions:
            out = self.text.encode([items[i][1] for i in captions])
            for i, row in zip(captions, out):
                vectors[i] = row
        if photos:
            out = self.image.encode_checked(np.stack([items[i][1] for i in photos]))
            for i, row in zip(photos, out):
                vectors[i] = row
        with self._lock:
            self._maybe_refresh()
            ix = self._ix
            for i, (kind, value, _) in enumerate(items):
                if kind == 'id':
                    try:
                        vectors[i] = np.asarray(ix.vector(value), np.float32)
                    except (KeyError, IndexError):
                        results[i] = NotFound('no indexed image has id %d' % value)
            by_k: Dict[int, List[int]] = {}
            for i, (_, _, k) in enumerate(items):
                if results[i] is None:
                    by_k.setdefault(k, []).append(i)
            for k, members in by_k.items():
                queries = np.stack([vectors[i] for i in members]).astype(np.float32, copy=False)
                for i, found in zip(members, ix.search_ids(queries, k)):
                    results[i] = [Hit(int(row_id), escape(ix.file(row_id)), float(score))
                                  for score, row_id in found]
        return results

    def _maybe_refresh(self):
        # Called with self._lock held.
        if not self._refresh_seconds:
            return
        now = time.monotonic()
        if now - self._last_refresh >= self._refresh_seconds:
            self._last_refresh = now
            try:
                if self._ix.refresh():
                    logger.info('index %s changed: now %d images', self.index_dir, len(self._ix))
            except Exception:  # a half-finished writer elsewhere must not stop the searches
                logger.exception('could not re-read %s; still serving the previous state',
                                 self.index_dir)
