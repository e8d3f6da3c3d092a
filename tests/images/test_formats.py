"""vseimageencoder.images.formats: the one table; every suffix the walk takes is read, and the
reader reads nothing the table does not name."""
import numpy as np
import pytest
from PIL import Image

from vseimageencoder.images import folders, formats, read


def test_every_walked_suffix_is_read_and_nothing_else():
    assert formats.IMAGE_SUFFIXES == frozenset(formats.FORMATS)
    assert set(formats.FORMATS.values()) == set(formats.ALLOWED_FORMATS)
    assert all(s.startswith('.') and s == s.lower() for s in formats.IMAGE_SUFFIXES)


@pytest.mark.parametrize('suffix,fmt', [('.MPO', 'JPEG'), ('.apng', 'PNG'), ('.jpe', 'JPEG'),
                                         ('.TIFF', 'TIFF'), ('.webp', 'WEBP')])
def test_walked_files_of_each_suffix_read(tmp_path, suffix, fmt):
    path = tmp_path / ('photo' + suffix)
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(str(path), format=fmt)
    assert [f for _, f in folders.walk([tmp_path])] == [str(path)]
    assert read.read_image(path).size == (30, 20)


def test_refusal_names_the_allowed_formats(tmp_path):
    path = tmp_path / 'x.png'
    path.write_bytes(b'8BPS' + bytes(60))
    with pytest.raises(read.ImageFormatError) as e:
        read.read_image(path)
    assert 'PSD' in e.value.reason and all(name in e.value.reason for name in formats.FORMAT_NAMES)
