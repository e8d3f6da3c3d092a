"""Reading image files: only the formats of :mod:`.formats`, within a pixel limit, upright
(EXIF orientation applied) and as 8-bit RGB; errors name the file and the reason."""
import contextlib
import os

import numpy as np

from vseimageencoder.images.formats import FORMAT_NAMES, OPENERS


# --------------------------------------------------------------------------- raw images


class ImageReadError(ValueError):
    """An image file could not be decoded; the message names the file, ``reason`` says why
    without it (for callers that name the source their own way, e.g. bytes in memory)."""

    def __init__(self, message: str, reason: str = ''):
        super().__init__(message)
        self.reason = reason or message


class ImageFormatError(ImageReadError):
    """The file is not in one of :data:`~vseimageencoder.images.formats.ALLOWED_FORMATS` (EPS, PDF, PSD, ... are refused
    unopened: some of Pillow's decoders call out to other programs, Ghostscript for EPS)."""


class ImageTooLargeError(ImageReadError):
    """Decoding the image would take more than :data:`MAX_IMAGE_PIXELS` pixels."""


class NotARegularImageError(ImageReadError):
    """The path is a FIFO, device, socket or directory: never opened for reading."""


#: Most pixels one image may decode to (after the reduced JPEG decode of ``resize='fast'``):
#: 40 megapixels, under half of Pillow's decompression-bomb warning (89.5 M) and a quarter
#: of its error; an 8K frame is 33 M. Set the ``VSEIMAGEENCODER_MAX_PIXELS`` environment
#: variable, or this attribute, to change it for the process.
MAX_IMAGE_PIXELS = int(os.environ.get('VSEIMAGEENCODER_MAX_PIXELS') or 40_000_000)

#: Signatures of common formats outside the allow-list, to name what was refused.
_REFUSED_SIGNATURES = ((b'%!PS', 'PostScript/EPS'), (b'\xc5\xd0\xd3\xc6', 'EPS'),
                       (b'%PDF', 'PDF'), (b'8BPS', 'PSD'), (b'\x00\x00\x01\x00', 'ICO'),
                       (b'icns', 'ICNS'), (b'gimp xcf', 'XCF'), (b'<?xml', 'XML/SVG'),
                       (b'<svg', 'SVG'), (b'P1', 'PBM'), (b'P2', 'PGM'), (b'P3', 'PPM'),
                       (b'P4', 'PBM'), (b'P5', 'PGM'), (b'P6', 'PPM'), (b'\x00\x00\x00\x0cjP', 'JPEG 2000'),
                       (b'\xffO\xffQ', 'JPEG 2000'), (b'DDS ', 'DDS'), (b'\x59\xa6\x6a\x95', 'Sun raster'))


def to_rgb(img):
    """A PIL image as 8-bit RGB, upright.

    EXIF orientation is applied first (phone photos are stored sideways with a rotation tag).
    Images with transparency (RGBA, LA, palette with a transparent index) are composited onto
    white, since the colours under fully transparent pixels are arbitrary; grayscale, CMYK,
    16-bit and float modes are converted.
    """
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)
    if img.mode == 'P':
        img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
    if img.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La'):
        rgba = img.convert('RGBA')
        white = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    if img.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'F'):
        # 16-bit / float grayscale: scale the full range to 8 bits.
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith('I') and arr.max() > 255 else max(float(arr.max()), 1.0)
        img = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return img.convert('RGB') if img.mode != 'RGB' else img


def read_image(path, min_short=None):
    """Open and decode an image file as upright RGB; :class:`ImageReadError` names the file.

    With ``min_short`` (pixels), a JPEG is decoded at the smallest DCT scale that keeps its
    short side at least that long (thumbnails need no full 12 MP decode); other formats, and
    ``None``, decode in full.
    """
    return _read(path, min_short)[0]


def _read(path, min_short):
    """Decode ``path`` as upright RGB; with ``min_short``, a JPEG is decoded at the smallest
    DCT scale (1, 1/2, 1/4, 1/8) that keeps its short side >= ``min_short``.

    :return: ``(image, scale, full_size, offset)``: the decoded upright image, how many
        original pixels one decoded pixel spans (1 when decoded in full), the upright size of
        the full-resolution image, and where the original's (0, 0) corner lies in the
        decoded image, in decoded pixels: so geometry computed on the original maps onto
        the decode as ``x / scale + offset``.
    """
    from PIL import Image, UnidentifiedImageError

    from vseimageencoder.files.regular import NotARegularFileError, open_regular

    try:
        with contextlib.ExitStack() as stack:
            # A path is opened only if it is a regular file (a FIFO would block the reader
            # for good); a file object (bytes in memory) is read as given.
            fp = stack.enter_context(open_regular(path)) if isinstance(path, (str, os.PathLike)) else path
            img = stack.enter_context(_open_allowed(fp, path))
            stored = img.size
            scale = 1.0
            if min_short and img.format in ('JPEG', 'MPO'):
                drafted = img.draft('RGB', (min_short, min_short))
                if drafted is not None:
                    scale = stored[0] / drafted[1][2]
            _check_pixels_allowed(img.size, stored, path)
            orientation = img.getexif().get(0x0112, 1) if scale != 1.0 else 1
            img.load()
            decoded = img.size
            out = to_rgb(img)
    except NotARegularFileError as e:
        raise NotARegularImageError('cannot read image %s: %s' % (path, e), str(e)) from None
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError('cannot read image %s: %s' % (path, e), str(e)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            EOFError, MemoryError) as e:
        if isinstance(e, ImageReadError):
            raise
        raise ImageReadError('cannot read image %s: %s' % (path, e), str(e)) from None
    turned = out.size != decoded  # EXIF orientation swapped the axes
    full = (stored[1], stored[0]) if turned else stored
    # A scaled decode rounds odd sizes up: its last row / column covers less than ``scale``
    # original pixels. Where the EXIF orientation flipped an axis, that short pixel is first,
    # and the original's origin sits inside it.
    flip_x, flip_y = _ORIENTATION_FLIPS.get(orientation, (False, False))
    offset = ((out.size[0] - full[0] / scale) if flip_x else 0.0,
              (out.size[1] - full[1] / scale) if flip_y else 0.0)
    return out, scale, full, offset


def _open_allowed(fp, path):
    """``Image.open`` restricted to :data:`~vseimageencoder.images.formats.ALLOWED_FORMATS`; ImageFormatError otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(fp, formats=OPENERS)
    except UnidentifiedImageError:
        try:
            fp.seek(0)
            head = fp.read(16)
        except (OSError, AttributeError, ValueError):
            head = b''
        kind = next((name for sig, name in _REFUSED_SIGNATURES if head.startswith(sig)), None)
        reason = ('%s is not an allowed image format' % kind if kind else
                  'not an image in an allowed format') + ' (allowed: %s)' % ', '.join(FORMAT_NAMES)
        raise ImageFormatError('cannot read image %s: %s' % (path, reason), reason) from None


def _check_pixels_allowed(decoded, stored, path) -> None:
    limit = MAX_IMAGE_PIXELS
    if decoded[0] * decoded[1] > limit:
        reason = ('%d x %d pixels%s is over the limit of %d pixels (MAX_IMAGE_PIXELS; '
                  'environment variable VSEIMAGEENCODER_MAX_PIXELS)'
                  % (stored[0], stored[1], '' if decoded == stored else
                     ' (%d x %d decoded)' % decoded, limit))
        raise ImageTooLargeError('cannot read image %s: %s' % (path, reason), reason)


#: For each EXIF orientation, whether the upright x and y axes run against the stored ones.
_ORIENTATION_FLIPS = {2: (True, False), 3: (True, True), 4: (False, True), 6: (True, False),
                      7: (True, True), 8: (False, True)}
