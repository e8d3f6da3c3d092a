"""Input contracts and the VSE++ evaluation transform (no jina, no model).

VSE++ evaluates on images resized to 256 on the short side, centre-cropped to 224x224,
scaled to [0, 1] and normalised with the ImageNet mean and std. :func:`check_image_batch`
and :func:`check_feature_batch` validate what reaches the tower and say exactly what is
wrong with anything else.

Two ways to compute that transform (``resize=``):

- ``'exact'``: the faithful one, what torchvision does with a PIL image: decode every pixel,
  antialiased bilinear resize of the whole image to short side 256, crop 224.
- ``'fast'``: the same geometry and the same final filter, but JPEGs are decoded at 1/2, 1/4
  or 1/8 scale by libjpeg's DCT scaling (never below twice the resized size), other images
  are box-reduced by an integer factor to no less than twice the resized size, and only the
  part of the image inside the crop (plus the filter's reach) is resized. For a JPEG the
  cost then grows with the megapixels only through the entropy decoding of the file; other
  formats (PNG, ...) must still be decoded in full.
  ``benchmarks/resize_fidelity.py`` measures how far its embeddings are from ``'exact'``.
"""
import contextlib
import os
import warnings
from typing import Tuple

import numpy as np

RESIZE = 256
CROP = 224
IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)
CHANNELS = 3

#: The ways to compute the transform; see the module docstring.
RESIZE_MODES = ('fast', 'exact')
#: The encoder's and the command's default. ``benchmarks/resize_fidelity.py`` decided it: the
#: worst cosine between fast and exact embeddings over its varied image set must be >= 0.999.
DEFAULT_RESIZE = 'fast'
#: The fast path never decodes or reduces below this multiple of the resized size, so the
#: last, antialiased bilinear step still sees at least 2 source pixels per output pixel.
FAST_MARGIN = 2


def _as_array(data, what: str) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data
    try:
        arr = np.asarray(data)
    except Exception as e:  # ragged lists and other shapes numpy cannot stack
        raise TypeError('%s must be a numpy array, got %s that numpy cannot convert (%s)'
                        % (what, type(data).__name__, e)) from None
    return arr


def _check_numeric(arr: np.ndarray, what: str) -> None:
    if arr.dtype.kind not in 'fiu':
        raise TypeError('%s has dtype %s; expected a real numeric dtype (float16/32/64 '
                        'normalised values, or uint8 pixels)' % (what, arr.dtype))


class NonFiniteInputError(ValueError):
    """A float batch holds NaN or infinite values, which would give NaN embeddings silently."""


def _check_finite(arr: np.ndarray, what: str) -> None:
    if arr.dtype.kind != 'f' or arr.size == 0:
        return
    finite = np.isfinite(arr)
    if finite.all():
        return
    bad = np.argwhere(~finite)
    first = tuple(int(i) for i in bad[0])
    raise NonFiniteInputError('%s holds %d NaN or infinite value(s), first at index %s (row %d), '
                              'which would make NaN embeddings' % (what, len(bad), first, first[0]))


def normalize_channel_axis(channel_axis: int, ndim: int = 4) -> int:
    """``channel_axis`` as a non-negative axis of an ``ndim``-d batch; ValueError if out of range."""
    try:
        axis = int(channel_axis)
    except (TypeError, ValueError):
        raise ValueError('channel_axis must be an integer, got %r' % (channel_axis,)) from None
    if axis != channel_axis or not -ndim <= axis < ndim:
        raise ValueError('channel_axis=%r is out of range for %d-d image batches (B, C, H, W); '
                         'use one of %d..%d' % (channel_axis, ndim, -ndim + 1, ndim - 1))
    if axis == 0 or axis == -ndim:
        raise ValueError('channel_axis=%r points at the batch axis; channels must be one of the '
                         'image axes 1..%d' % (channel_axis, ndim - 1))
    if axis % ndim not in (1, ndim - 1):
        # channels between the spatial axes is no layout images come in; most likely a typo
        raise ValueError('channel_axis=%r puts the channels between the spatial axes; use 1 for '
                         '(B, 3, H, W) or %d (or -1) for (B, H, W, 3)'
                         % (channel_axis, ndim - 1))
    return axis % ndim


def check_image_batch(data, channel_axis: int = 1) -> np.ndarray:
    """Validate an image batch and return it as a ``(B, 3, H, W)`` view (no copy, dtype kept).

    Accepts a 4-d real numeric array with 3 channels at ``channel_axis`` (1 or 3). Raises
    ``TypeError`` for non-numeric dtypes, ``ValueError`` naming the shape for a wrong
    number of dimensions, a wrong channel count or empty images, and
    :class:`NonFiniteInputError` for float values that are NaN or infinite.
    """
    arr = _as_array(data, 'the image batch')
    axis = normalize_channel_axis(channel_axis)
    if arr.ndim != 4:
        raise ValueError('the image batch has shape %s (%d-d); expected a 4-d batch with channels '
                         'at axis %d, e.g. (B, 3, H, W) for channel_axis=1'
                         % (arr.shape, arr.ndim, axis))
    _check_numeric(arr, 'the image batch of shape %s' % (arr.shape,))
    _check_finite(arr, 'the image batch of shape %s' % (arr.shape,))
    if arr.shape[axis] != CHANNELS:
        raise ValueError('the image batch has shape %s: %d channels at channel_axis=%d, expected %d '
                         '(RGB)' % (arr.shape, arr.shape[axis], axis, CHANNELS))
    out = np.moveaxis(arr, axis, 1) if axis != 1 else arr
    if arr.shape[0] and (out.shape[2] == 0 or out.shape[3] == 0):
        raise ValueError('the image batch has shape %s: images of zero height or width' % (arr.shape,))
    return out


def check_feature_batch(data, feature_dim: int) -> np.ndarray:
    """Validate a batch of precomputed CNN features: ``(B, feature_dim)``, real numeric and
    finite (:class:`NonFiniteInputError` otherwise)."""
    arr = _as_array(data, 'the feature batch')
    if arr.ndim != 2 or arr.shape[1] != feature_dim:
        raise ValueError('the feature batch has shape %s; this precomputed-feature model expects '
                         '(B, %d)' % (arr.shape, feature_dim))
    _check_numeric(arr, 'the feature batch of shape %s' % (arr.shape,))
    _check_finite(arr, 'the feature batch of shape %s' % (arr.shape,))
    return arr


# --------------------------------------------------------------------------- raw images

#: Suffixes treated as images when a folder is expanded (case-insensitive).
IMAGE_SUFFIXES = frozenset({'.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp',
                            '.ppm', '.pgm', '.pbm', '.jfif'})


class ImageReadError(ValueError):
    """An image file could not be decoded; the message names the file, ``reason`` says why
    without it (for callers that name the source their own way, e.g. bytes in memory)."""

    def __init__(self, message: str, reason: str = ''):
        super().__init__(message)
        self.reason = reason or message


class ImageFormatError(ImageReadError):
    """The file is not in one of :data:`ALLOWED_FORMATS` (EPS, PDF, PSD, ... are refused
    unopened: some of Pillow's decoders call out to other programs, Ghostscript for EPS)."""


class ImageTooLargeError(ImageReadError):
    """Decoding the image would take more than :data:`MAX_IMAGE_PIXELS` pixels."""


class NotARegularImageError(ImageReadError):
    """The path is a FIFO, device, socket or directory: never opened for reading."""


#: The image formats decoded (Pillow's names; MPO is the multi-picture JPEG phones write).
ALLOWED_FORMATS = ('JPEG', 'MPO', 'PNG', 'WEBP', 'GIF', 'BMP', 'TIFF')
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
    """``Image.open`` restricted to :data:`ALLOWED_FORMATS`; ImageFormatError otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        # MPO has no opener of its own: JPEG's opens it (and returns an MPO image).
        return Image.open(fp, formats=[f for f in ALLOWED_FORMATS if f != 'MPO'])
    except UnidentifiedImageError:
        try:
            fp.seek(0)
            head = fp.read(16)
        except (OSError, AttributeError, ValueError):
            head = b''
        kind = next((name for sig, name in _REFUSED_SIGNATURES if head.startswith(sig)), None)
        reason = ('%s is not an allowed image format' % kind if kind else
                  'not an image in an allowed format') + ' (allowed: JPEG, PNG, WebP, GIF, BMP, TIFF)'
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


def check_resize(resize: str) -> str:
    """``resize`` if it is one of :data:`RESIZE_MODES`, else ValueError naming it."""
    if resize not in RESIZE_MODES:
        raise ValueError('resize=%r is not one of %s' % (resize, ', '.join(RESIZE_MODES)))
    return resize


def crop_geometry(width: int, height: int):
    """Where the faithful transform's 224 crop lies in an upright ``width`` x ``height`` image.

    :return: ``(resized, box)``: the size ``(w, h)`` the whole image is resized to (short
        side 256, long side truncated as torchvision does) and the crop as a box
        ``(left, top, right, bottom)`` in the original image's pixel coordinates (floats).
    """
    if width <= height:
        new_w, new_h = RESIZE, int(RESIZE * height / width)
    else:
        new_w, new_h = int(RESIZE * width / height), RESIZE
    left, top = _crop_offset(new_w, new_h)
    sx, sy = width / new_w, height / new_h
    return (new_w, new_h), (left * sx, top * sy, (left + CROP) * sx, (top + CROP) * sy)


def _crop_offset(resized_w: int, resized_h: int):
    """``(left, top)`` of the centre 224 crop in an image resized to ``resized_w`` x
    ``resized_h``: torchvision's offsets, rounded half to even as Python's round."""
    return int(round((resized_w - CROP) / 2.0)), int(round((resized_h - CROP) / 2.0))


def _fast_resize_crop(img, scale: float = 1.0, full_size=None, offset=(0.0, 0.0)):
    """The 224 x 224 crop of an upright RGB PIL image, by the fast path.

    ``img`` may be a reduced decode of an image whose upright original size is
    ``full_size``, an original pixel ``(x, y)`` lying at ``(x / scale + offset[0], y / scale
    + offset[1])`` in it (:func:`_read`); the crop is computed on the original geometry, so
    it covers what the faithful transform's crop covers.
    """
    from PIL import Image

    w, h = full_size or img.size
    _, (left, top, right, bottom) = crop_geometry(w, h)
    box = (left / scale + offset[0], top / scale + offset[1],
           right / scale + offset[0], bottom / scale + offset[1])
    # Resizing only the crop box is exact (the filter reads past the box as far as it
    # reaches); reducing_gap first box-averages by whole factors down to FAST_MARGIN x the
    # output, so the cost of this step stays flat as images grow.
    return img.resize((CROP, CROP), Image.BILINEAR, box=box, reducing_gap=float(FAST_MARGIN))


def transform(img, resize: str = DEFAULT_RESIZE) -> np.ndarray:
    """The VSE++ evaluation transform of one image.

    :param img: a PIL image (any mode), a path to an image file, or a uint8 array
        ``(H, W, 3)`` / ``(H, W)`` of RGB / gray pixels.
    :param resize: ``'exact'``: short side resized to 256 (bilinear, antialiased, as
        torchvision does for PIL images) from the fully decoded image, then centre crop 224;
        ``'fast'``: the same crop computed from a reduced decode (see the module docstring).
    :return: float32 ``(3, 224, 224)``, scaled to [0, 1] and normalised with the ImageNet
        mean and std.
    """
    from PIL import Image

    check_resize(resize)
    if isinstance(img, np.ndarray):
        if resize == 'fast':
            arr = _check_pixels(img)
            return transform_batch(arr[None], channel_axis=-1, resize='fast')[0]
        img = _array_to_pil(img)
    elif not isinstance(img, Image.Image):
        if resize == 'fast':
            return normalize_pixels(np.asarray(_fast_resize_crop(*_read(img, RESIZE * FAST_MARGIN))))
        img = read_image(img)
    else:
        img = to_rgb(img)
    if resize == 'fast':
        return normalize_pixels(np.asarray(_fast_resize_crop(img)))
    return normalize_pixels(np.asarray(_exact_resize_crop(img)))


def _exact_resize_crop(img):
    import torchvision.transforms.functional as TF

    return TF.center_crop(TF.resize(img, RESIZE, interpolation=TF.InterpolationMode.BILINEAR), CROP)


def _normalization_table() -> np.ndarray:
    # Per channel, the normalised value of each of the 256 pixel levels, computed in float32
    # exactly as (x / 255 - mean) / std would be, so a lookup gives the same bits.
    levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
    mean = np.asarray(IMAGENET_MEAN, np.float32)[:, None]
    std = np.asarray(IMAGENET_STD, np.float32)[:, None]
    return (levels[None, :] - mean) / std


_LEVELS = _normalization_table()


def normalize_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)`` (or ``(B, H, W, 3)``) pixels -> float32 ``(3, H, W)`` (or
    ``(B, 3, H, W)``): scaled to [0, 1], normalised with the ImageNet mean and std."""
    if pixels.dtype != np.uint8:
        raise TypeError('pixels must be uint8, got %s for shape %s' % (pixels.dtype, pixels.shape))
    chw = np.moveaxis(pixels, -1, -3)
    out = np.empty(chw.shape, np.float32)
    for c in range(CHANNELS):
        np.take(_LEVELS[c], chw[..., c, :, :], out=out[..., c, :, :])
    return out


def _check_pixels(arr: np.ndarray) -> np.ndarray:
    """A raw uint8 image as ``(H, W, 3)`` (gray replicated to RGB, as PIL converts it)."""
    if arr.dtype != np.uint8:
        raise TypeError('raw pixel arrays must be uint8, got %s for shape %s' % (arr.dtype, arr.shape))
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], CHANNELS, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return arr
    raise ValueError('a raw image must be (H, W, 3) RGB or (H, W) gray uint8, got shape %s' % (arr.shape,))


def _array_to_pil(arr: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(_check_pixels(arr))).convert('RGB')


def transform_batch(pixels: np.ndarray, channel_axis: int = 1, resize: str = DEFAULT_RESIZE,
                    workers: int = 0) -> np.ndarray:
    """The evaluation transform of a uint8 batch with 3 channels at ``channel_axis``.

    ``'fast'`` resizes the whole batch at once with torch's antialiased bilinear kernel for
    uint8 (the same filter as PIL's, results within one grey level of it) and crops it;
    ``'exact'`` runs the faithful PIL transform image by image, on ``workers`` threads (0: one
    per CPU core, at most one per image; PIL releases the GIL while it resizes).

    :return: float32 ``(B, 3, 224, 224)``.
    """
    batch = check_image_batch(pixels, channel_axis)  # (B, 3, H, W) view
    if batch.dtype != np.uint8:
        raise TypeError('raw pixel batches must be uint8, got %s' % batch.dtype)
    check_resize(resize)
    n = batch.shape[0]
    out = np.empty((n, CHANNELS, CROP, CROP), np.float32)
    if n == 0:
        return out
    if resize == 'fast':
        import torch
        import torch.nn.functional as F

        h, w = batch.shape[2:]
        (new_w, new_h), _ = crop_geometry(w, h)
        left, top = _crop_offset(new_w, new_h)
        # Channels-last is the layout torch's uint8 antialiasing kernel is fast in; an
        # (B, H, W, 3) input already is, so this copies nothing then.
        with warnings.catch_warnings():  # read-only input is fine: it is only read
            warnings.simplefilter('ignore', UserWarning)
            x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        y = F.interpolate(x, size=(new_h, new_w), mode='bilinear', antialias=True, align_corners=False)
        crop = y[:, :, top:top + CROP, left:left + CROP].permute(0, 2, 3, 1).numpy()
        return normalize_pixels(crop)

    def one(i):
        out[i] = transform(np.ascontiguousarray(batch[i].transpose(1, 2, 0)), resize='exact')

    threads = min(n, workers or os.cpu_count() or 1)
    if threads == 1:
        for i in range(n):
            one(i)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(n)))
    return out


def expand_paths(paths):
    """Image files named by ``paths``, in order: files as given, folders as the image files
    inside them (recursively, sorted). Yields ``pathlib.Path`` objects; a path that does not
    exist raises ``FileNotFoundError`` naming it."""
    import os
    from pathlib import Path

    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = []
            for root, dirs, files in os.walk(str(p)):
                dirs.sort()
                found.extend(Path(root) / f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES)
            for f in sorted(found):
                yield f
        elif p.exists():
            yield p
        else:
            raise FileNotFoundError('no such image file or folder: %s' % p)
