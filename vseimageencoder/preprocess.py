"""Input contracts and the VSE++ evaluation transform (no jina, no model).

VSE++ evaluates on images resized to 256 on the short side, centre-cropped to 224x224,
scaled to [0, 1] and normalised with the ImageNet mean and std. :func:`check_image_batch`
and :func:`check_feature_batch` validate what reaches the tower and say exactly what is
wrong with anything else.
"""
from typing import Tuple

import numpy as np

RESIZE = 256
CROP = 224
IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)
CHANNELS = 3


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
    return axis % ndim


def check_image_batch(data, channel_axis: int = 1) -> np.ndarray:
    """Validate an image batch and return it as a ``(B, 3, H, W)`` view (no copy, dtype kept).

    Accepts a 4-d real numeric array with 3 channels at ``channel_axis``. Raises
    ``TypeError`` for non-numeric dtypes and ``ValueError`` naming the shape for a wrong
    number of dimensions, a wrong channel count or empty images.
    """
    arr = _as_array(data, 'the image batch')
    axis = normalize_channel_axis(channel_axis)
    if arr.ndim != 4:
        raise ValueError('the image batch has shape %s (%d-d); expected a 4-d batch with channels '
                         'at axis %d, e.g. (B, 3, H, W) for channel_axis=1'
                         % (arr.shape, arr.ndim, axis))
    _check_numeric(arr, 'the image batch of shape %s' % (arr.shape,))
    if arr.shape[axis] != CHANNELS:
        raise ValueError('the image batch has shape %s: %d channels at channel_axis=%d, expected %d '
                         '(RGB)' % (arr.shape, arr.shape[axis], axis, CHANNELS))
    out = np.moveaxis(arr, axis, 1) if axis != 1 else arr
    if arr.shape[0] and (out.shape[2] == 0 or out.shape[3] == 0):
        raise ValueError('the image batch has shape %s: images of zero height or width' % (arr.shape,))
    return out


def check_feature_batch(data, feature_dim: int) -> np.ndarray:
    """Validate a batch of precomputed CNN features: ``(B, feature_dim)``, real numeric."""
    arr = _as_array(data, 'the feature batch')
    if arr.ndim != 2 or arr.shape[1] != feature_dim:
        raise ValueError('the feature batch has shape %s; this precomputed-feature model expects '
                         '(B, %d)' % (arr.shape, feature_dim))
    _check_numeric(arr, 'the feature batch of shape %s' % (arr.shape,))
    return arr


# --------------------------------------------------------------------------- raw images

#: Suffixes treated as images when a folder is expanded (case-insensitive).
IMAGE_SUFFIXES = frozenset({'.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp',
                            '.ppm', '.pgm', '.pbm', '.jfif'})


class ImageReadError(ValueError):
    """An image file could not be decoded; the message names the file."""


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


def read_image(path):
    """Open and decode an image file as upright RGB; :class:`ImageReadError` names the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageReadError('cannot read image %s: %s' % (path, e)) from None


def transform(img) -> np.ndarray:
    """The VSE++ evaluation transform of one image.

    :param img: a PIL image (any mode), a path to an image file, or a uint8 array
        ``(H, W, 3)`` / ``(H, W)`` of RGB / gray pixels.
    :return: float32 ``(3, 224, 224)``: short side resized to 256 (bilinear, antialiased, as
        torchvision does for PIL images), centre crop 224, scaled to [0, 1], normalised with the
        ImageNet mean and std.
    """
    import torchvision.transforms.functional as TF
    from PIL import Image

    if isinstance(img, np.ndarray):
        img = _array_to_pil(img)
    elif not isinstance(img, Image.Image):
        img = read_image(img)
    else:
        img = to_rgb(img)
    img = TF.center_crop(TF.resize(img, RESIZE, interpolation=TF.InterpolationMode.BILINEAR), CROP)
    x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
    mean = np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, np.float32)[:, None, None]
    return (x - mean) / std


def _array_to_pil(arr: np.ndarray):
    from PIL import Image

    if arr.dtype != np.uint8:
        raise TypeError('raw pixel arrays must be uint8, got %s for shape %s' % (arr.dtype, arr.shape))
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3):
        return Image.fromarray(np.ascontiguousarray(arr)).convert('RGB')
    raise ValueError('a raw image must be (H, W, 3) RGB or (H, W) gray uint8, got shape %s' % (arr.shape,))


def transform_batch(pixels: np.ndarray, channel_axis: int = 1) -> np.ndarray:
    """The evaluation transform of a uint8 batch with 3 channels at ``channel_axis``.

    :return: float32 ``(B, 3, 224, 224)``.
    """
    batch = check_image_batch(pixels, channel_axis)  # (B, 3, H, W) view
    if batch.dtype != np.uint8:
        raise TypeError('raw pixel batches must be uint8, got %s' % batch.dtype)
    out = np.empty((batch.shape[0], CHANNELS, CROP, CROP), np.float32)
    for i in range(batch.shape[0]):
        out[i] = transform(np.ascontiguousarray(batch[i].transpose(1, 2, 0)))
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
