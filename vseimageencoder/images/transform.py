"""The VSE++ evaluation transform (short side 256, centre crop 224, ImageNet normalisation),
computed exactly or by a faster reduced decode (no jina, no model).
"""
import os
import warnings
from typing import Tuple

import numpy as np

from vseimageencoder.images.checks import CHANNELS, check_image_batch
from vseimageencoder.images.read import _read, read_image, to_rgb

RESIZE = 256
CROP = 224
IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

#: The ways to compute the transform; see :func:`transform`.
RESIZE_MODES = ('fast', 'exact')
#: The encoder's and the command's default. ``benchmarks/resize_fidelity.py`` decided it: the
#: worst cosine between fast and exact embeddings over its varied image set must be >= 0.999.
DEFAULT_RESIZE = 'fast'
#: The fast path never decodes or reduces below this multiple of the resized size, so the
#: last, antialiased bilinear step still sees at least 2 source pixels per output pixel.
FAST_MARGIN = 2



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
        ``'fast'``: the same geometry and final filter, but a JPEG is decoded at 1/2, 1/4 or
        1/8 scale by libjpeg's DCT scaling and other images are box-reduced by an integer
        factor (never below :data:`FAST_MARGIN` x the resized size), and only the part inside
        the crop (plus the filter's reach) is resized. Other formats are still decoded in
        full. ``benchmarks/resize_fidelity.py`` measures how far it is from ``'exact'``.
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
