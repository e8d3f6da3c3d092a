"""Checking an uploaded photo before any pixel of it is decoded, then transforming it.

The size limit is enforced by the web layer while the body arrives (nothing over it is
buffered); here the bytes are identified from their header alone, their declared size is
held against a pixel limit (a few hundred KB of PNG can declare 20,000 x 20,000 pixels,
1.2 GB once decoded), and only then are they decoded, by the package's own reading
(:mod:`vseimageencoder.preprocess`), exactly as indexed files are.
"""
import io

import numpy as np

from .errors import BadRequest, TooLarge

#: Default limit on an upload's size in bytes (``serve --max-upload-mb``).
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Default limit on the pixels an upload may declare: 50 megapixels (a 8,660 x 5,773
#: photo) decodes to 150 MB of RGB at most.
DEFAULT_MAX_PIXELS = 50_000_000


def probe(data: bytes):
    """``(format, width, height)`` read from the header of ``data`` (nothing decoded).

    :raises BadRequest: the bytes are empty or not an image format Pillow identifies.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise BadRequest('the upload is empty: send a photo (JPEG, PNG, ...) as the multipart '
                         'field "image" or as the request body')
    try:
        # Image.open reads the header only; the pixel data stays undecoded until load().
        with Image.open(io.BytesIO(data)) as img:
            return img.format, img.size[0], img.size[1]
    except Image.DecompressionBombError as e:
        # Pillow's own guard, past twice its MAX_IMAGE_PIXELS; its message gives the count.
        raise TooLarge('the uploaded image declares too many pixels to decode: %s' % e) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BadRequest('the upload (%d bytes) is not an image: %s' % (len(data), _reason(e))) from None


def _reason(e: Exception) -> str:
    # Pillow names the stream object in its message ("<_io.BytesIO object at 0x...>"); say
    # what it was instead.
    text = str(e)
    return 'no image format recognised' if 'cannot identify image file' in text else text


def upload_pixels(data: bytes, resize: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The VSE++ evaluation transform of an uploaded photo, as indexed files get it.

    :param data: the uploaded bytes (already within the byte limit).
    :param resize: the transform the index was built with (``'fast'`` or ``'exact'``).
    :param max_pixels: the most pixels the image may declare; more is refused unread.
    :return: float32 ``(3, 224, 224)``, normalised with the ImageNet mean and std.
    :raises BadRequest: not an image, or an image that cannot be decoded (truncated, ...).
    :raises TooLarge: the image declares more than ``max_pixels`` pixels.
    """
    from ..preprocess import ImageReadError, transform

    fmt, width, height = probe(data)
    if width * height > max_pixels:
        raise TooLarge('the uploaded %s declares %d x %d pixels (%d); this server decodes at most '
                       '%d pixels' % (fmt, width, height, width * height, max_pixels))
    try:
        return transform(io.BytesIO(data), resize=resize)
    except ImageReadError as e:
        raise BadRequest('the uploaded %s (%d x %d) cannot be decoded: %s'
                         % (fmt, width, height, _reason(Exception(e.reason)))) from None
