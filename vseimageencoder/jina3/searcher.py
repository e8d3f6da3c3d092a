"""``VSESearcher``: a jina 3 Executor over the on-disk index (:mod:`vseimageencoder.index`), and
``VSEMatchMerger`` for sharded Deployments.
"""
import os
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from docarray import BaseDoc, DocList
from jina import Executor, requests

from vseimageencoder.release.locate import DEFAULT_SEARCH_DIRS
from vseimageencoder.index import (ANN_THRESHOLD, IndexLockedError, NoApproximateIndexError,
                     Writer, open_index, provenance)
from vseimageencoder.images.transform import check_resize, DEFAULT_RESIZE
from vseimageencoder.jina3.docs import CrossModalDoc

#: What ``/search`` returns without a ``k`` parameter.
DEFAULT_K = 10


class MatchDoc(BaseDoc):
    """One match: the indexed document's ``url`` and its cosine ``score`` to the query."""
    url: Optional[str] = None
    score: Optional[float] = None


class SearchDoc(CrossModalDoc):
    """:class:`~.docs.CrossModalDoc` with the ``matches`` ``/search`` fills, best first."""
    matches: Optional[DocList[MatchDoc]] = None


def _request_k(parameters: Optional[Dict], default: int) -> int:
    """The request's ``k``: over gRPC and HTTP numbers arrive as doubles, so ``5.0`` is 5;
    ``2.5``, ``0``, ``True`` or a string are refused with a message naming the value."""
    value = (parameters or {}).get('k', default)
    if value is None:
        value = default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError("the request's k parameter must be a positive integer, got %r" % (value,))
    return int(value)


def _name(i: int, doc) -> str:
    return '%s #%d (id %s)' % (type(doc).__name__, i, doc.id)


def _embeddings(docs, dim: Optional[int]) -> np.ndarray:
    """float32 ``(len(docs), D)``; ValueError naming the first document without a usable one."""
    rows = []
    for i, d in enumerate(docs):
        e = d.embedding
        if e is None:
            raise ValueError('%s has no embedding: send it through VSEImageEncoder or VSETextEncoder first'
                             % _name(i, d))
        v = np.asarray(e, dtype=np.float32).reshape(-1)
        if dim is not None and v.shape[0] != dim:
            raise ValueError('%s has a %d-d embedding; the index holds %d-d ones' % (_name(i, d), v.shape[0], dim))
        if not np.all(np.isfinite(v)) or not np.any(v):
            raise ValueError('%s has an embedding with NaN, infinity or only zeros' % _name(i, d))
        rows.append(v)
    if rows and len({len(r) for r in rows}) > 1:
        raise ValueError('the documents of this request have embeddings of different widths')
    return np.stack(rows) if rows else np.zeros((0, dim or 0), np.float32)


class VSESearcher(Executor):
    """Index and search VSE++ embeddings.

    ``/index`` adds documents (``url`` and ``embedding``, as the encoders leave them) in one
    commit per request (the store of ``vseimageencoder index``: a kill leaves every committed
    request and nothing half-written). ``/search`` fills ``matches`` with the ``k`` best rows
    (``url``, cosine ``score``), best first.

    Sharding: with ``shards=N`` each shard has its own folder; jina sends each ``/index`` to
    one shard and each ``/search`` to all, and concatenates the shards' matches unsorted, so
    a sharded Deployment takes ``uses_after=`` :class:`VSEMatchMerger` (``merger.yml``) to
    get the same top ``k`` as one shard. Replicas of a shard share its folder: an ``/index``
    replica takes the folder's lock (up to ``lock_timeout`` s); readers see each commit at
    their next request.

    :param index_dir: the index folder; with shards, ``index_dir/shard-<shard id>``. Default:
        ``index`` in the Executor's workspace (jina gives each shard its own).
    :param model_path: the checkpoint the encoders of the Flow use (file or folder, looked up as
        the encoders do). Its sha256, architecture and embedding size are the index's
        provenance; an existing index made with another checkpoint is refused at start.
    :param precision: recorded in the provenance with ``resize`` (what the image encoder uses).
    :param resize: as ``precision``.
    :param k: matches per document when a request gives no ``parameters['k']``.
    :param exact: ``True`` always scans, ``False`` always uses the approximate index, ``None``
        (default) the approximate one from ``ann_threshold`` rows on.
    :param ann_threshold: the live row count from which search is approximate by default.
    :param lock_timeout: seconds an ``/index`` request waits for another replica's write.
    """

    def __init__(self, index_dir: Optional[str] = None, model_path: str = 'pretrained', precision: str = 'fp32',
                 resize: str = DEFAULT_RESIZE, k: int = DEFAULT_K, exact: Optional[bool] = None,
                 ann_threshold: int = ANN_THRESHOLD, lock_timeout: float = 60.0, **kwargs):
        super().__init__(**kwargs)
        from vseimageencoder.release.checkpoint import read_options, read_verified_checkpoint, resolve_checkpoint_path

        self.k = _request_k({'k': k}, DEFAULT_K)
        self.exact = exact
        self.ann_threshold = int(ann_threshold)
        self.lock_timeout = float(lock_timeout)
        shards = int(getattr(self.runtime_args, 'shards', 1) or 1)
        shard_id = getattr(self.runtime_args, 'shard_id', None)
        if index_dir is None:
            self.index_dir = Path(self.workspace) / 'index'
        else:
            self.index_dir = Path(index_dir)
            if shards > 1:
                self.index_dir = self.index_dir / ('shard-%d' % int(shard_id or 0))
        self.checkpoint = checkpoint = resolve_checkpoint_path(model_path, list(DEFAULT_SEARCH_DIRS))
        options = read_options(read_verified_checkpoint(checkpoint), checkpoint)
        self.provenance = provenance.record(checkpoint, check_resize(resize), precision, options)
        self.dim = int(options.embed_size)
        self._view = None
        if (self.index_dir / 'manifest.json').exists():
            view = self._open()
            provenance.check_checkpoint(self.index_dir, view.provenance, checkpoint,
                                        remedy='give the model_path it was made with',
                                        sha256=self.provenance['sha256'], required=True)
            provenance.check_width(self.index_dir, view.dim, checkpoint, self.dim)
        self.logger.info('VSESearcher on %s (shard %s of %d): %d rows'
                         % (self.index_dir, shard_id, shards, len(self._view) if self._view else 0))

    def _open(self):
        if self._view is None:
            if not (self.index_dir / 'manifest.json').exists():
                return None
            self._view = open_index(self.index_dir, ann_threshold=self.ann_threshold)
        else:
            self._view.refresh()
        return self._view

    def _writer(self) -> Writer:
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                return Writer(self.index_dir)
            except IndexLockedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @requests(on='/index')
    def index(self, docs: DocList[SearchDoc], parameters: Optional[Dict] = None, **kwargs) -> DocList[SearchDoc]:
        """Add every document (``url`` and ``embedding``) in one commit, or none: all are checked
        first and a bad one fails the request naming it. A ``url`` already indexed gets the new
        embedding (its old row is removed in the same commit)."""
        if not len(docs):
            return docs
        vectors = _embeddings(docs, self.dim)
        urls = []
        for i, d in enumerate(docs):
            if not isinstance(d.url, str) or not d.url:
                raise ValueError('%s has no url: /index stores each document under its url' % _name(i, d))
            urls.append(d.url)
        last = {u: i for i, u in enumerate(urls)}  # a url sent twice: the last one wins
        keep = sorted(last.values())
        from vseimageencoder.index.update import _finish

        with self._writer() as w:
            if not w.exists:
                w.create(self.provenance, self.dim)
            else:
                provenance.check_checkpoint(self.index_dir, w.manifest['provenance'], self.checkpoint,
                                            remedy='the index was rebuilt with another checkpoint '
                                                   'while this Executor ran; restart it with that one',
                                            sha256=self.provenance['sha256'], required=True)
            old = w.view.entries() if w.view is not None else {}
            replaced = [old[urls[i]][0] for i in keep if urls[i] in old]
            w.remove(replaced)
            w.add(vectors[keep], [urls[i] for i in keep], [-1] * len(keep), [-1] * len(keep))
            w.commit()
            _finish(w)  # compaction when due, and the approximate index kept in step
        return docs

    @requests(on='/search')
    def search(self, docs: DocList[SearchDoc], parameters: Optional[Dict] = None, **kwargs) -> DocList[SearchDoc]:
        """Fill ``matches`` of every document with the ``parameters['k']`` best indexed rows."""
        k = _request_k(parameters, self.k)
        if not len(docs):
            return docs
        queries = _embeddings(docs, self.dim)
        view = self._open()
        if view is None or not len(view):
            for d in docs:
                d.matches = DocList[MatchDoc]()
            return docs
        try:
            found = view.search(queries, k, exact=self.exact)
        except NoApproximateIndexError:
            found = view.search(queries, k, exact=True)
        for d, hits in zip(docs, found):
            d.matches = DocList[MatchDoc]([MatchDoc(url=f, score=float(s)) for s, f in hits])
        return docs

    @requests
    def passthrough(self, docs: DocList[CrossModalDoc], **kwargs) -> DocList[CrossModalDoc]:
        """Other endpoints (e.g. ``/encode`` through a Flow): documents pass unchanged. Declared
        so the Executor can follow the encoders in a Flow (jina checks the schemas of chained
        Executors on their shared endpoints)."""
        return docs


class VSEMatchMerger(Executor):
    """``uses_after`` of a sharded :class:`VSESearcher`: per document, the matches of all shards
    merged by score (best first, ties by url) and cut to ``parameters['k']`` (default: the
    longest list one shard returned, i.e. the searchers' own ``k``)."""

    @requests(on='/search')
    def merge(self, docs: DocList[SearchDoc], parameters: Optional[Dict] = None,
              docs_matrix: Optional[List[DocList[SearchDoc]]] = None, **kwargs) -> DocList[SearchDoc]:
        answers = list(docs_matrix) if docs_matrix else [docs]
        base = answers[0]
        per_doc: Dict[str, list] = {d.id: [] for d in base}
        longest = 0
        for answer in answers:
            for d in answer:
                ms = list(d.matches or [])
                longest = max(longest, len(ms))
                per_doc.setdefault(d.id, []).extend(ms)
        k = _request_k(parameters, max(longest, 1))
        for d in base:
            ms = sorted(per_doc.get(d.id, []), key=lambda m: (-(m.score or 0.0), m.url or ''))
            d.matches = DocList[MatchDoc]([MatchDoc(url=m.url, score=m.score) for m in ms[:k]])
        return base

    @requests
    def first(self, docs: DocList[SearchDoc], docs_matrix: Optional[List[DocList[SearchDoc]]] = None,
              **kwargs) -> DocList[SearchDoc]:
        """Other endpoints (``/index`` goes to one shard): that shard's answer as it is."""
        return docs_matrix[0] if docs_matrix else docs
