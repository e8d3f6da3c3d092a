"""Smaller JPEG renditions of indexed photos, made when first asked for and kept in memory."""
import io
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Tuple

from vseimageencoder.serve.errors import NotFound

logger = logging.getLogger(__name__)

#: Long side of a grid thumbnail and of the larger view, in pixels.
THUMBNAIL_SIZE = 320
LARGE_SIZE = 1280
#: Default memory the cache may hold.
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024


def render_jpeg(path: Path, size: int, quality: int = 85) -> bytes:
    """``path`` upright (EXIF orientation applied), RGB, its long side at most ``size``,
    as JPEG bytes. Decoded by the package's reading (:mod:`vseimageencoder.images.read`), a
    JPEG at the smallest DCT scale that still covers ``size``.

    :raises vseimageencoder.images.read.ImageReadError: the file cannot be read (any more).
    """
    from PIL import Image

    from vseimageencoder.images.read import read_image

    img = read_image(path, min_short=size)
    img.thumbnail((size, size), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, 'JPEG', quality=quality, optimize=False)
    return buf.getvalue()


class RenditionCache:
    """``get(image_id, size)``: JPEG bytes of the indexed photo ``image_id``, made once.

    Keyed by the row's id and file: ids are never reused and a changed file is re-embedded
    under a new id, so a rendition never goes stale (the file in the key covers an index
    deleted and made again under the server). Bounded by bytes, least recently used out.

    :param locate: id -> file (raising NotFound for ids not in the index).
    :param max_bytes: the most bytes of JPEG kept.
    """

    def __init__(self, locate: Callable[[int], Path], max_bytes: int = DEFAULT_CACHE_BYTES):
        self._locate = locate
        self._max_bytes = max_bytes
        self._items: 'OrderedDict[Tuple[int, int, str], bytes]' = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, image_id: int, size: int) -> bytes:
        path = self._locate(image_id)  # NotFound for an unknown id, before any file access
        key = (image_id, size, str(path))
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return data
            self.misses += 1
        from vseimageencoder.images.read import ImageReadError
        try:
            data = render_jpeg(path, size)
        except ImageReadError as e:
            # The index lists it, but the file changed or went away since it was indexed.
            logger.warning('cannot render image %d: %s', image_id, e)
            raise NotFound('indexed image %d can no longer be read from its file' % image_id) from None
        with self._lock:
            if key not in self._items and len(data) <= self._max_bytes:
                self._items[key] = data
                self._bytes += len(data)
                while self._bytes > self._max_bytes:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= len(old)
        return data
