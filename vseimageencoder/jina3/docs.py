"""The documents the jina 3 Executors take and fill (docarray v2)."""
from typing import Optional

from docarray import BaseDoc
from docarray.typing import NdArray


class ImageDoc(BaseDoc):
    """One image in, its VSE++ embedding out. Give one of (first one set wins):

    - ``tensor``: uint8 ``(H, W, 3)`` RGB pixels (or ``(H, W)`` gray) of any size, which get
      the VSE++ evaluation transform; or a float ``(3, H, W)`` image already transformed and
      normalised (used as given). For ``*_precomp`` checkpoints, float ``(img_dim,)`` CNN
      features instead.
    - ``blob``: the bytes of an image file (JPEG, PNG, ...).
    - ``url``: an image file path on the Executor's machine, a ``file://`` URL, an
      ``http(s)://`` URL the Executor fetches, or a ``data:image/...;base64,`` URL holding the
      file's bytes (the way to send image bytes over HTTP: JSON has no bytes type).

    Over HTTP, jina 3.34 drops JSON bodies over 1 MiB: send URLs, data URLs of compressed
    images or small pixel arrays there (pixels arrive as int64, which is accepted), and
    full-size tensors over gRPC.

    ``embedding`` is filled with float32 ``(embed_size,)`` of unit L2 norm (unless the
    checkpoint says ``no_imgnorm``).
    """
    tensor: Optional[NdArray] = None
    blob: Optional[bytes] = None
    url: Optional[str] = None
    embedding: Optional[NdArray] = None


class TextDoc(BaseDoc):
    """One caption in (``text``), its VSE++ embedding out (``embedding``: float32
    ``(embed_size,)``)."""
    text: Optional[str] = None
    embedding: Optional[NdArray] = None
