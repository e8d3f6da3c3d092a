"""Input the towers cannot embed meaningfully is refused by name: NaN or
infinite float pixels or features, and a channel axis between the spatial axes."""
import numpy as np
import pytest

from vseimageencoder.images.checks import check_feature_batch, check_image_batch, NonFiniteInputError, normalize_channel_axis


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize('dtype', [np.float16, np.float32, np.float64])
def test_non_finite_pixels_are_named(bad, dtype):
    batch = np.zeros((3, 3, 8, 8), dtype)
    batch[2, 1, 4, 5] = bad
    with pytest.raises(NonFiniteInputError) as e:
        check_image_batch(batch)
    msg = str(e.value)
    assert '(3, 3, 8, 8)' in msg and '1 NaN or infinite' in msg and '(2, 1, 4, 5)' in msg
    assert isinstance(e.value, ValueError)


def test_non_finite_features_are_named():
    feats = np.ones((4, 16), np.float32)
    feats[1, 3] = np.nan
    feats[3, 0] = np.inf
    with pytest.raises(NonFiniteInputError, match=r'feature batch of shape \(4, 16\) holds 2 .*\(1, 3\)'):
        check_feature_batch(feats, 16)


def test_finite_and_uint8_batches_pass():
    assert check_image_batch(np.zeros((2, 8, 8, 3), np.float32), channel_axis=-1).shape == (2, 3, 8, 8)
    assert check_image_batch(np.full((2, 3, 8, 8), 255, np.uint8)).shape == (2, 3, 8, 8)
    assert check_feature_batch(np.ones((2, 16)), 16).shape == (2, 16)


@pytest.mark.parametrize('axis', [2, -2])
def test_channel_axis_between_spatial_axes_is_refused(axis):
    with pytest.raises(ValueError, match='between the spatial axes'):
        normalize_channel_axis(axis)
    with pytest.raises(ValueError, match='between the spatial axes'):
        check_image_batch(np.zeros((2, 8, 3, 8), np.float32), channel_axis=axis)


@pytest.mark.parametrize('axis,expected', [(1, 1), (3, 3), (-1, 3), (-3, 1)])
def test_channel_axis_first_or_last_image_axis(axis, expected):
    assert normalize_channel_axis(axis) == expected


def test_encoder_refuses_nan_before_the_tower(small_release):
    from vseimageencoder.encoders import ImageEncoder
    enc = ImageEncoder(str(small_release[0]))
    batch = np.zeros((2, 3, 32, 32), np.float32)
    batch[1, 0, 0, 0] = np.nan
    with pytest.raises(NonFiniteInputError, match='row 1'):
        enc.encode(batch)
    with pytest.raises(ValueError, match='between the spatial axes'):
        ImageEncoder(str(small_release[0]), channel_axis=2)


def test_read_only_memory_map_encodes_without_warning(small_release, tmp_path):
    import warnings
    from vseimageencoder.encoders import ImageEncoder
    enc = ImageEncoder(str(small_release[0]))
    batch = np.random.RandomState(0).rand(2, 3, 32, 32).astype(np.float32)
    np.save(str(tmp_path / 'b.npy'), batch)
    mapped = np.load(str(tmp_path / 'b.npy'), mmap_mode='r')
    assert not mapped.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # torch's "not writable" UserWarning would fail here
        got = enc.encode(mapped)
    np.testing.assert_allclose(got, enc.encode(batch), atol=1e-6)
    np.testing.assert_array_equal(np.load(str(tmp_path / 'b.npy')), batch)  # left as it was
