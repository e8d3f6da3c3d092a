"""``VSEImageEncoder`` and ``VSETextEncoder``: jina 3 Executors over the jina-free core."""
import io
import re
from contextlib import contextmanager
import urllib.parse
import urllib.request
from typing import Dict, List, Optional, Tuple

import numpy as np
from docarray import DocList
from jina import Executor, requests

from vseimageencoder.encoders import DEFAULT_SEARCH_DIRS, ImageEncoder, check_fuse, check_precision
from vseimageencoder.images.sources import SourcePolicy, SourceRefused
from vseimageencoder.images.read import ImageReadError
from vseimageencoder.images.transform import check_resize, DEFAULT_RESIZE, transform
from vseimageencoder.jina3.docs import ImageDoc, TextDoc, has_caption, has_image

#: Both endpoints every encoder serves ('/default' is what jina calls the default endpoint).
ENDPOINTS = ['/encode', '/default']


_ADDRESS = re.compile(r' at 0x[0-9a-fA-F]+')


class RequestError(ValueError):
    """A request the Executor refuses or cannot serve; the message names the fault and the
    document, and is all the client is sent."""

    # jina 3 replies to a failed request with traceback.format_exception(type(e), e,
    # e.__traceback__) of the Executor's exception: interpreter and venv paths, source lines,
    # object addresses. Read from Python this attribute is always None, so the client gets
    # the message alone; the interpreter keeps the real traceback at C level, which is what
    # sys.exc_info() and so the server's own error log use.
    @property
    def __traceback__(self):
        return None

    @__traceback__.setter
    def __traceback__(self, value):
        pass


@contextmanager
def _client_errors(logger):
    """Turn what a request raises into a :class:`RequestError`: named faults (ValueError,
    TypeError, which this module raises with the document named) keep their message; anything
    else is logged here with its traceback and reaches the client as its type only."""
    try:
        yield
    except RequestError:
        raise
    except (ValueError, TypeError) as e:
        # A library's message may hold an object's repr: no heap addresses for the client.
        raise RequestError(_ADDRESS.sub('', str(e))) from None
    except Exception as e:
        logger.error('request failed: %r' % e, exc_info=True)
        raise RequestError('internal error (%s) while encoding this request; the server log '
                           'has the details' % type(e).__name__) from None


def _check_batch_size(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError('%s must be a positive integer, got %r' % (what, value))
    return int(value)


def _request_batch_size(parameters: Optional[Dict], default: int) -> int:
    """The request's ``batch_size`` parameter, or ``default``. Request parameters travel as
    a protobuf Struct (gRPC) or JSON read into one (HTTP), where every number is a double:
    ``2`` arrives as ``2.0``, so an integral float counts as that integer; ``2.5`` does not."""
    if not parameters or parameters.get('batch_size') is None:
        return default
    value = parameters['batch_size']
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _check_batch_size(value, "the request's batch_size parameter")


def _without_paths(e: Exception) -> str:
    """An OSError's reason without the file name the OS attached (it may be a resolved
    server path the client never sent); other errors as they are."""
    if isinstance(e, OSError) and e.strerror and (e.filename is not None):
        return e.strerror
    return str(e)


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
    :param file_root: the folder a document's ``url`` may name files in (symlinks resolved;
        a relative path in a document is taken relative to it). Default ``'.'``: the working
        directory of the process serving the Executor when it starts. ``None``: any file the
        process can read -- unsafe whenever clients are not trusted (they can probe the
        server's disk).
    :param fetch_urls: fetch ``http(s)`` URLs (default False: refused, send bytes instead).
    :param allow_private_urls: with ``fetch_urls``, also fetch from loopback, private,
        link-local and cloud-metadata addresses -- unsafe when served (a client could make
        the server call its own network). By default every address a host resolves to, on
        every redirect, must be public.
    :param url_timeout: seconds for all URL fetches of one request together (one deadline
        per request, however many URLs and however slowly a server sends).
    :param max_url_bytes: the largest image an ``http(s)`` URL may deliver.
    :param resize: how images get the VSE++ transform: ``'fast'`` (reduced JPEG decode of
        files, only the crop box resized) or ``'exact'`` (the faithful full decode and resize).
    :param fuse: compile a CPU tower with oneDNN Graph fusion for passes of ``batch_size``
        images when the Executor starts (costs seconds once, then runs faster, docs/speed.md);
        other pass sizes run
        unfused with the same results. None (default): when ``precision`` resolves to
        ``bf16`` or ``fp16``; True: fp32 too; False: never.
    """

    def __init__(self, model_path: str = 'pretrained', precision: str = 'fp32',
                 batch_size: int = 32, device: str = 'cpu', file_root: Optional[str] = '.',
                 fetch_urls: bool = False, allow_private_urls: bool = False,
                 url_timeout: float = 10.0, max_url_bytes: int = 64 << 20,
                 resize: str = DEFAULT_RESIZE, fuse: Optional[bool] = None, **kwargs):
        super().__init__(**kwargs)
        self.resize = check_resize(resize)
        self.batch_size = _check_batch_size(batch_size, 'batch_size')
        check_fuse(fuse)  # before the checkpoint is read
        self.sources = SourcePolicy(file_root=file_root, fetch_urls=fetch_urls,
                                    allow_private_urls=allow_private_urls,
                                    url_timeout=url_timeout, max_url_bytes=max_url_bytes)
        self.core = ImageEncoder(model_path, channel_axis=1, precision=check_precision(precision),
                                 device=device, search_dirs=DEFAULT_SEARCH_DIRS, resize=self.resize)
        self.logger.info(self.core.describe())
        if self.core.fuse(self.batch_size, fuse):
            self.logger.info('the image tower runs fused for passes of %d images (oneDNN Graph)'
                             % self.batch_size)
        self.logger.info('image sources: %s' % self.sources.describe())
        if file_root is None:
            self.logger.warning('file_root=None: clients can read any file this process can; '
                                'serve only to trusted clients')
        if fetch_urls and allow_private_urls is True:
            self.logger.warning('allow_private_urls=True: clients can make this server fetch from '
                                'its own private network; serve only to trusted clients')

    @property
    def embed_size(self) -> int:
        return self.core.embed_size

    @requests(on=ENDPOINTS)
    def encode(self, docs: DocList[ImageDoc], parameters: Optional[Dict] = None,
               **kwargs) -> DocList[ImageDoc]:
        """Fill ``embedding`` (float32 ``(embed_size,)``) on every document with an image;
        documents with only ``text`` are left to ``VSETextEncoder``; one with neither is an
        error (:class:`RequestError`, as is any refused source: see the class docstring).

        All of a request's own documents are read and checked first: a bad one fails the
        request, and the client gets only :class:`RequestError`'s message (the fault, the
        document's position and id; no traceback, server path or object address; the server
        log keeps the traceback). Other documents pass untouched, so both encoders chain in a
        Flow in either order."""
        with _client_errors(self.logger):
            return self._encode(docs, parameters)

    def _encode(self, docs, parameters):
        batch_size = _request_batch_size(parameters, self.batch_size)
        mine = [i for i, doc in enumerate(docs) if not has_caption(doc)]
        deadline = self.sources.deadline()  # one for every URL of the request
        inputs = {i: self._read(i, docs[i], deadline) for i in mine}
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

    def _read(self, i: int, doc: ImageDoc, deadline: float) -> np.ndarray:
        """The document's image as the core takes it: float32 ``(3, H, W)`` transformed (or
        ``(img_dim,)`` features for precomputed-feature checkpoints)."""
        if doc.tensor is not None:
            return self._from_tensor(i, doc)
        if doc.blob is not None:
            return self._from_blob(i, doc)
        if doc.url:
            return self._from_url(i, doc, deadline)
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

    def _from_url(self, i: int, doc: ImageDoc, deadline: float) -> np.ndarray:
        url = doc.url
        shown = url if len(url) <= 200 else url[:80] + '...(%d characters)' % len(url)
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        try:
            if scheme in ('http', 'https'):
                return self._bytes_of_url(self.sources.fetch(url, deadline))
            if scheme == 'data':
                return self._bytes_of_url(self._data_url_bytes(url))
            if scheme == 'file':
                path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
            elif scheme and len(scheme) > 1:  # one letter: a Windows drive, not a scheme
                raise ValueError('unsupported URL scheme %r (http, https, file, data or a path)' % scheme)
            else:
                path = url
            with self.sources.open_file(path) as f:
                # A file object: under resize='fast' a JPEG still gets the reduced decode.
                return transform(f, resize=self.resize)
        except SourceRefused as e:
            raise ValueError('%s: url %s refused (rule %s): %s' % (_name(i, doc), shown, e.rule, e)) from None
        except ImageReadError as e:
            raise ValueError('%s: url %s is not a readable image: %s'
                             % (_name(i, doc), shown, e.reason)) from None
        except (OSError, ValueError) as e:
            raise ValueError('%s: cannot read image url %s: %s'
                             % (_name(i, doc), shown, _without_paths(e))) from None

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
        from vseimageencoder.encoders import TextEncoder

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
        neither is an error (:class:`RequestError`)."""
        with _client_errors(self.logger):
            return self._encode(docs, parameters)

    def _encode(self, docs, parameters):
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
