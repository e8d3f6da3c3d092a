"""What may reach the towers: image batches and precomputed features checked for shape, dtype
and finite values, with errors that say exactly what is wrong."""
import numpy as np


#: Colour channels of every image the towers take (RGB).
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
