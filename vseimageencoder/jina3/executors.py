"""``VSEImageEncoder`` and ``VSETextEncoder``: jina 3 Executors over the jina-free core.

Each loads its tower once (:class:`~vseimageencoder.encoders.ImageEncoder` /
``TextEncoder``), serves ``/encode`` and the default endpoint, and fills ``embedding`` on
every document of a request that is its own (the image encoder: documents with an image;
the text encoder: documents with only a caption, see :mod:`.docs`), or on none: all its
documents are read and checked first, and a bad one fails the request with an error naming
it (its position and id) and the fault. Documents of the other tower pass through untouched,
which is what lets both encoders sit one after the other in a Flow, in either order.
"""
import io
import urllib.parse
import urllib.request
from typing import Dict, List, Optional, Tuple

import numpy as np
from docarray import DocList
from jina import Executor, requests

from ..encoders import DEFAULT_SEARCH_DIRS, ImageEncoder, check_precision
from ..preprocess import DEFAULT_RESIZE, ImageReadError, check_resize, transform
from .docs import ImageDoc, TextDoc, has_caption, has_image

#: Both endpoints every encoder serves ('/default' is what jina calls the default endpoint).
ENDPOINTS = ['/encode', '/default']


def _check_batch_size(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError('%s must be a positive integer, got %r' % (what, value))
    return int(value)


def _request_batch_size(parameters: Optional[Dict], default: int) -> int:
    if parameters and parameters.get('batch_size') is not None:
        return _check_batch_size(parameters['batch_size'], "the request's batch_size parameter")
    return default


def _name(i: int, doc) -> str:
    return '%s #%d (id %s)' % (type(doc).__name__, i, doc.id)


class VSEImageEncoder(Executor):
    """VSE++ image embeddings (Faghri et al., BMVC 2018) for :class:`ImageDoc` documents
    (or any documents of the same schema, e.g. :class:`~.docs.CrossModalDoc`): those with an
    image; captions are left to :class:`VSETextEncoder`.

    :param model_path: a released VSE++ checkpoint (``model_best.pth.tar``) or a folder
        holding one; a relative path is looked up in the working directory, then beside the
        ``vseimageencoder`` package.
    :param precision: ``fp32`` (faithful), ``bf16``, ``fp16`` or ``auto``; embeddings are
        float32 whatever the choice.
    :param batch_size: images per forward pass; a request's ``parameters={'batch_size': n}``
        overrides it for that request.
    :param device: torch device, e.g. ``cpu`` or ``cuda:0``.
    :param url_timeout: seconds allowed for fetching one ``http(s)`` image URL.
    :param max_url_bytes: the largest image an ``http(s)`` URL may deliver.
    :param resize: how images get the VSE++ transform: ``'fast'`` (reduced JPEG decode of
        files, only the crop box resized) or ``'exact'`` (the faithful full decode and resize).
    """

    def __init__(self, model_path: str = 'pretrained', precision: str = 'fp32',
                 batch_size: int = 32, device: str = 'cpu', url_timeout: float = 10.0,
                 max_url_bytes: int = 64 << 20, resize: str = DEFAULT_RESIZE, **kwargs):
        super().__init__(**kwargs)
        self.resize = check_resize(resize)
        self.batch_size = _check_batch_size(batch_size, 'batch_size')
        self.url_timeout = float(url_timeout)
        self.max_url_bytes = int(max_url_bytes)
        self.core = ImageEncoder(model_path, channel_axis=1, precision=check_precision(precision),
                                 device=device, search_dirs=DEFAULT_SEARCH_DIRS, resize=self.resize)
        self.logger.info(self.core.describe())

    @property
    def embed_size(self) -> int:
        return self.core.embed_size

    @requests(on=ENDPOINTS)
    def encode(self, docs: DocList[ImageDoc], parameters: Optional[Dict] = None,
               **kwargs) -> DocList[ImageDoc]:
        """Fill ``embedding`` (float32 ``(embed_size,)``) on every document with an image;
        documents with only ``text`` are left to ``VSETextEncoder``; one with neither is an
        error."""
        batch_size = _request_batch_size(parameters, self.batch_size)
        mine = [i for i, doc in enumerate(docs) if not has_caption(doc)]
        inputs = {i: self._read(i, docs[i]) for i in mine}
        # Transformed images of different sizes cannot share a forward pass: one group per shape.
        groups: Dict[Tuple[int, ...], List[int]] = {}
        for i, x in inputs.items():
            groups.setdefault(x.shape, []).append(i)
        out: Dict[int, np.ndarray] = {}
        for shape, rows in groups.items():
            batch = np.stack([inputs[i] for i in rows])
            try:
                out.update(zip(rows, self.core.encode(batch, batch_size=batch_size)))
            except (TypeError, ValueError) as e:
                raise ValueError('%s: %s' % (', '.join(_name(i, docs[i]) for i in rows[:5])
                                             + (' ...' if len(rows) > 5 else ''), e)) from None
        for i, emb in out.items():
            docs[i].embedding = emb
        return docs

    # ------------------------------------------------------------------ reading one doc

    def _read(self, i: int, doc: ImageDoc) -> np.ndarray:
        """The document's image as the core takes it: float32 ``(3, H, W)`` transformed (or
        ``(img_dim,)`` features for precomputed-feature checkpoints)."""
        if doc.tensor is not None:
            return self._from_tensor(i, doc)
        if doc.blob is not None:
            return self._from_blob(i, doc)
        if doc.url:
            return self._from_url(i, doc)
        raise ValueError('%s has no image: set tensor, blob or url (or text, for '
                         'VSETextEncoder)' % _name(i, doc))

    def _from_tensor(self, i: int, doc: ImageDoc) -> np.ndarray:
        arr = np.asarray(doc.tensor)
        opts = self.core.options
        if opts.precomputed:
            if arr.ndim != 1 or arr.shape[0] != opts.img_dim or arr.dtype.kind != 'f':
                raise ValueError('%s: tensor of shape %s and dtype %s; this checkpoint takes '
                                 'float (%d,) precomputed CNN features'
                                 % (_name(i, doc), arr.shape, arr.dtype, opts.img_dim))
            return arr.astype(np.float32)
        if arr.dtype.kind in 'iu' and (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
            if min(arr.shape[:2]) == 0:
                raise ValueError('%s: tensor of shape %s is an empty image' % (_name(i, doc), arr.shape))
            # JSON (HTTP) carries no dtype: uint8 pixels arrive as int64. Integers are pixels
            # if every value is one.
            if arr.dtype != np.uint8:
                lo, hi = int(arr.min()), int(arr.max())
                if lo < 0 or hi > 255:
                    raise ValueError('%s: integer tensor of shape %s holds values from %d to %d; '
                                     'pixels are 0..255' % (_name(i, doc), arr.shape, lo, hi))
                arr = arr.astype(np.uint8)
            return transform(arr, resize=self.resize)
        if arr.dtype.kind == 'f' and arr.ndim == 3 and arr.shape[0] == 3:
            if not np.isfinite(arr).all():
                raise ValueError('%s: tensor of shape %s holds NaN or infinite values'
                                 % (_name(i, doc), arr.shape))
            return arr.astype(np.float32, copy=False)
        raise ValueError('%s: tensor of shape %s and dtype %s; expected uint8 (H, W, 3) pixels '
                         '(integers 0..255) or a transformed float (3, H, W) image'
                         % (_name(i, doc), arr.shape, arr.dtype))

    def _from_blob(self, i: int, doc: ImageDoc) -> np.ndarray:
        try:
            return self._transform_bytes(doc.blob)
        except ImageReadError as e:
            raise ValueError('%s: blob of %d bytes is not a readable image: %s'
                             % (_name(i, doc), len(doc.blob), e.reason)) from None

    def _transform_bytes(self, data: bytes) -> np.ndarray:
        """An image file's bytes, transformed as a file on disk would be (so under
        ``resize='fast'`` a JPEG gets the reduced decode); ImageReadError if unreadable."""
        return transform(io.BytesIO(data), resize=self.resize)

    def _from_url(self, i: int, doc: ImageDoc) -> np.ndarray:
        url = doc.url
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        try:
            if scheme in ('http', 'https'):
                return self._bytes_of_url(self._fetch(url))
            if scheme == 'data':
                return self._bytes_of_url(self._data_url_bytes(url))
            if scheme == 'file':
                path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
            elif scheme and len(scheme) > 1:  # one letter: a Windows drive, not a scheme
                raise ValueError('unsupported URL scheme %r (http, https, file, data or a path)' % scheme)
            else:
                path = url
            return transform(path, resize=self.resize)  # a file: the reduced JPEG decode applies
        except ImageReadError as e:
            raise ValueError('%s: %s' % (_name(i, doc), e)) from None
        except (OSError, ValueError) as e:
            shown = url if len(url) <= 200 else url[:80] + '...(%d characters)' % len(url)
            raise ValueError('%s: cannot read image url %s: %s' % (_name(i, doc), shown, e)) from None

    @staticmethod
    def _data_url_bytes(url: str) -> bytes:
        # data:[<mediatype>][;base64],<data> (RFC 2397): image bytes inside JSON, for HTTP,
        # where a bytes field cannot travel.
        import base64
        import binascii

        head, sep, payload = url[5:].partition(',')
        if not sep or not head.endswith(';base64'):
            raise ValueError('a data: URL must be base64 (data:image/png;base64,...)')
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error as e:
            raise ValueError('the data: URL is not valid base64: %s' % e) from None

    def _fetch(self, url: str):
        with urllib.request.urlopen(url, timeout=self.url_timeout) as resp:
            data = resp.read(self.max_url_bytes + 1)
        if len(data) > self.max_url_bytes:
            raise ValueError('larger than max_url_bytes=%d' % self.max_url_bytes)
        return data

    def _bytes_of_url(self, data: bytes) -> np.ndarray:
        try:
            return self._transform_bytes(data)
        except ImageReadError as e:
            raise ValueError('%d bytes that are not a readable image: %s' % (len(data), e.reason)) from None


class VSETextEncoder(Executor):
    """VSE++ caption embeddings for :class:`TextDoc` documents (or any of the same schema):
    those with ``text`` and no image, in the same joint space as :class:`VSEImageEncoder`
    given the same checkpoint; images are left to it.

    :param model_path: a released VSE++ checkpoint or a folder holding one (both towers are
        in it).
    :param vocab_path: the vocabulary the text tower was trained with (VSE++'s
        ``<data>_vocab.pkl``); None: found as the core's ``TextEncoder`` finds it.
    :param precision: as for :class:`VSEImageEncoder`.
    :param batch_size: captions per forward pass; a request's ``parameters`` may override it.
    :param device: torch device.
    """

    def __init__(self, model_path: str = 'pretrained', vocab_path: Optional[str] = None,
                 precision: str = 'fp32', batch_size: int = 128, device: str = 'cpu', **kwargs):
        super().__init__(**kwargs)
        from ..encoders import TextEncoder

        self.batch_size = _check_batch_size(batch_size, 'batch_size')
        self.core = TextEncoder(model_path, vocab_path=vocab_path,
                                precision=check_precision(precision), device=device,
                                search_dirs=DEFAULT_SEARCH_DIRS)
        self.logger.info(self.core.describe())

    @property
    def embed_size(self) -> int:
        return self.core.embed_size

    @requests(on=ENDPOINTS)
    def encode(self, docs: DocList[TextDoc], parameters: Optional[Dict] = None,
               **kwargs) -> DocList[TextDoc]:
        """Fill ``embedding`` (float32 ``(embed_size,)``) on every document with ``text``
        and no image; documents with an image are left to ``VSEImageEncoder``; one with
        neither is an error."""
        batch_size = _request_batch_size(parameters, self.batch_size)
        mine = []
        for i, doc in enumerate(docs):
            if has_caption(doc):
                mine.append(i)
            elif not has_image(doc):
                raise ValueError('%s has no text (and no image, for VSEImageEncoder)' % _name(i, doc))
        if mine:
            out = self.core.encode([docs[i].text for i in mine], batch_size=batch_size)
            for i, emb in zip(mine, out):
                docs[i].embedding = emb
        return docs
