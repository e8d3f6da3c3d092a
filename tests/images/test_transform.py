import numpy as np
import pytest
from PIL import Image

from tests.support.images import reference_transform, write_image_set
from vseimageencoder.images import read, transform, folders


@pytest.fixture(scope='module')
def image_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp('images')
    return folder, write_image_set(folder)


def test_transform_matches_reference_for_each_kind(image_set):
    folder, refs = image_set
    for name, ref in refs.items():
        if ref is None:
            continue
        got = transform.transform(folder / name, resize='exact')
        assert got.shape == (3, 224, 224) and got.dtype == np.float32, name
        np.testing.assert_allclose(got, reference_transform(ref), atol=1e-6, err_msg=name)


def test_exif_orientation_is_honoured(image_set):
    folder, refs = image_set
    img = read.read_image(folder / 'rotated.jpg')
    assert img.size == (200, 320)  # stored 320 wide, 200 high; upright it is portrait
    with Image.open(str(folder / 'rotated.jpg')) as raw:
        assert raw.size == (320, 200)


def test_alpha_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    img = read.to_rgb(Image.fromarray(rgba))
    assert img.mode == 'RGB' and np.asarray(img).min() == 255


@pytest.mark.parametrize('mode', ['L', 'LA', 'P', 'CMYK', 'I;16', 'RGBA', 'RGB', '1'])
def test_every_mode_becomes_rgb(mode):
    img = Image.new(mode, (10, 7))
    out = read.to_rgb(img)
    assert out.mode == 'RGB' and out.size == (10, 7)


def test_uint8_array_and_pil_agree(image_set):
    folder, refs = image_set
    arr = np.asarray(refs['photo.jpg'])
    gray = np.asarray(refs['gray.png'])[..., 0]
    for resize in transform.RESIZE_MODES:
        # Arrays take torch's batched resize when fast: within one grey level of PIL's.
        tol = 1e-6 if resize == 'exact' else 1.01 / 255 / min(transform.IMAGENET_STD)
        np.testing.assert_allclose(transform.transform(arr, resize), transform.transform(refs['photo.jpg'], resize), atol=tol)
        np.testing.assert_allclose(transform.transform(gray, resize), transform.transform(refs['gray.png'], resize), atol=tol)


def test_transform_batch_channel_axes(image_set):
    folder, refs = image_set
    hwc = np.stack([np.asarray(refs['photo.jpg'].resize((300, 260)))] * 2)
    for resize in transform.RESIZE_MODES:
        expected = np.stack([transform.transform(im, resize) for im in hwc])
        np.testing.assert_allclose(transform.transform_batch(hwc, channel_axis=-1, resize=resize), expected, atol=1e-6)
        np.testing.assert_allclose(transform.transform_batch(hwc.transpose(0, 3, 1, 2), channel_axis=1, resize=resize),
                                   expected, atol=1e-6)


def test_read_errors_name_the_file(image_set):
    folder, _ = image_set
    with pytest.raises(read.ImageReadError, match='broken.jpg'):
        read.read_image(folder / 'broken.jpg')
    with pytest.raises(read.ImageReadError, match='missing.png'):
        read.read_image(folder / 'missing.png')


def test_bad_arrays():
    for resize in transform.RESIZE_MODES:
        with pytest.raises(TypeError, match='uint8'):
            transform.transform(np.zeros((8, 8, 3), np.float32), resize)
        with pytest.raises(ValueError, match=r'\(8, 8, 4\)'):
            transform.transform(np.zeros((8, 8, 4), np.uint8), resize)


def test_expand_paths_order(image_set, tmp_path):
    folder, _ = image_set
    got = [p.relative_to(folder).as_posix() for p in folders.expand_paths([folder])]
    assert got == ['broken.jpg', 'cmyk.jpg', 'gray.png', 'nested/alpha.png',
                   'nested/deeper/palette.png', 'photo.jpg', 'rotated.jpg']
    single = folder / 'gray.png'
    assert list(folders.expand_paths([single, folder / 'nested'])) == [
        single, folder / 'nested' / 'alpha.png', folder / 'nested' / 'deeper' / 'palette.png']
    with pytest.raises(FileNotFoundError, match='nope'):
        list(folders.expand_paths([tmp_path / 'nope']))
