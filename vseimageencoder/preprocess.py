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
