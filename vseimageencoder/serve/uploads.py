"""Checking an uploaded photo from its header before any pixel is decoded, then transforming it
as indexed files are.
"""
import io
from typing import Optional

import numpy as np

from vseimageencoder.serve.errors import BadRequest, TooLarge

#: Default limit on an upload's size in bytes (``serve --max-upload-mb``).
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def probe(data: bytes):
    """``(format, width, height)`` read from the header of ``data`` (nothing decoded).

    :raises BadRequest: the bytes are empty or not an image in an accepted format.
    :raises TooLarge: Pillow's own decompression-bomb guard fired on the header.
    """
    from PIL import Image, UnidentifiedImageError

    from vseimageencoder.images.formats import FORMAT_NAMES, OPENERS

    if not data:
        raise BadRequest('the upload is empty: send a photo (JPEG, PNG, ...) as the multipart '
                         'field "image" or as the request body')
    try:
        # Image.open reads the header only; the pixel data stays undecoded until load().
        with Image.open(io.BytesIO(data), formats=OPENERS) as img:
            return img.format, img.size[0], img.size[1]
    except Image.DecompressionBombError as e:
        # Pillow's guard, past twice its MAX_IMAGE_PIXELS; its message gives the count.
        raise TooLarge('the uploaded image declares too many pixels to decode: %s' % e) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise BadRequest('the upload (%d bytes) is not an image: %s (accepted: %s)'
                         % (len(data), _reason(e), ', '.join(FORMAT_NAMES))) from None


def _reason(e: Exception) -> str:
    # Pillow names the stream object in its message ("<_io.BytesIO object at 0x...>"); say
    # what it was instead.
    text = str(e)
    return 'no accepted image format recognised' if 'cannot identify image file' in text else text


def upload_pixels(data: bytes, resize: str, max_pixels: Optional[int] = None) -> np.ndarray:
    """The VSE++ evaluation transform of an uploaded photo, as indexed files get it.

    The web layer enforces the byte limit while the body arrives. Here the format is
    identified from the header alone (:data:`vseimageencoder.images.formats.ALLOWED_FORMATS`)
    and the declared size held against the pixel limit before anything is decoded: a small
    PNG can declare 20,000 x 20,000 pixels. Decoding then goes through
    :mod:`vseimageencoder.images.read` with its own checks.

    :param data: the uploaded bytes (already within the byte limit).
    :param resize: the transform the index was built with (``'fast'`` or ``'exact'``).
    :param max_pixels: the most pixels the image may declare (None, or above the package's
        :data:`~vseimageencoder.images.read.MAX_IMAGE_PIXELS`: that limit); more is
        refused unread.
    :return: float32 ``(3, 224, 224)``, normalised with the ImageNet mean and std.
    :raises BadRequest: not an image, or an image that cannot be decoded (truncated, ...).
    :raises TooLarge: the image declares more pixels than allowed.
    """
    from vseimageencoder.images import read
    from vseimageencoder.images.read import ImageReadError, ImageTooLargeError
    from vseimageencoder.images.transform import transform

    limit = read.MAX_IMAGE_PIXELS
    if max_pixels is not None:
        limit = min(limit, max_pixels)
    fmt, width, height = probe(data)
    if width * height > limit:
        raise TooLarge('the uploaded %s declares %d x %d pixels (%d); this server decodes at most '
                       '%d pixels' % (fmt, width, height, width * height, limit))
    try:
        return transform(io.BytesIO(data), resize=resize)
    except ImageTooLargeError as e:
        raise TooLarge('the uploaded %s (%d x %d) is too large to decode: %s'
                       % (fmt, width, height, e.reason)) from None
    except ImageReadError as e:
        raise BadRequest('the uploaded %s (%d x %d) cannot be decoded: %s'
                         % (fmt, width, height, _reason(Exception(e.reason)))) from None
