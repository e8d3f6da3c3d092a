"""The documents the jina 3 Executors take and fill (docarray v2): one schema for both towers."""
from typing import Optional

from docarray import BaseDoc
from docarray.typing import NdArray


class CrossModalDoc(BaseDoc):
    """An image or a caption in, its VSE++ embedding out (both towers share one space).

    ``ImageDoc`` and ``TextDoc`` are this schema under the names each Executor declares:
    jina 3 chains Executors on one endpoint only when their schemas have the same fields, so
    with one schema both encoders chain on ``/encode`` and a request may mix images and
    captions (:func:`has_image` decides which encoder a document is for).

    Image, for ``VSEImageEncoder`` (the first one set wins):

    - ``tensor``: uint8 ``(H, W, 3)`` RGB pixels (or ``(H, W)`` gray) of any size, which get
      the VSE++ evaluation transform; or a float ``(3, H, W)`` image already transformed and
      normalised (used as given). For ``*_precomp`` checkpoints, float ``(img_dim,)`` CNN
      features instead.
    - ``blob``: the bytes of an image file (JPEG, PNG, ...).
    - ``url``: an image file path on the Executor's machine or a ``file://`` URL (read only
      under the Executor's ``file_root``), an ``http(s)://`` URL (fetched only if the Executor
      has ``fetch_urls``, and then only from public addresses unless ``allow_private_urls``),
      or a ``data:image/...;base64,`` URL holding the file's bytes (the way to send image
      bytes over HTTP: JSON has no bytes type).

    Caption, for ``VSETextEncoder``: ``text`` (any string, ``''`` included) on a document
    with no image. A document with both is an image (``text`` rides along unread, e.g. as
    its caption or title).

    Over HTTP, jina 3.34 drops JSON bodies over 1 MiB: send URLs, data URLs of compressed
    images or small pixel arrays there (pixels arrive as int64, which is accepted), and
    full-size tensors over gRPC.

    ``embedding`` is filled with float32 ``(embed_size,)`` of unit L2 norm (unless the
    checkpoint says ``no_imgnorm``).
    """
    tensor: Optional[NdArray] = None
    blob: Optional[bytes] = None
    url: Optional[str] = None
    text: Optional[str] = None
    embedding: Optional[NdArray] = None


class ImageDoc(CrossModalDoc):
    """The document ``VSEImageEncoder`` declares: :class:`CrossModalDoc` with an image in
    ``tensor``, ``blob`` or ``url``."""


class TextDoc(CrossModalDoc):
    """The document ``VSETextEncoder`` declares: :class:`CrossModalDoc` with a caption in
    ``text`` (float32 ``(embed_size,)`` ``embedding`` out)."""


def has_image(doc) -> bool:
    """Whether a document is the image encoder's: it sets ``tensor``, ``blob`` or a
    non-empty ``url``. The others, if they hold ``text``, are the text encoder's."""
    return doc.tensor is not None or doc.blob is not None or bool(doc.url)


def has_caption(doc) -> bool:
    """Whether a document is the text encoder's: ``text`` set and no image."""
    return isinstance(doc.text, str) and not has_image(doc)
