"""The device decode path (vseimageencoder/pipeline/cuda_decode.py) against the exact transform, run
on the CPU: torchvision's libjpeg-turbo decoder and torch's resize must land within one
8-bit level of PIL's faithful transform, upright whatever the EXIF orientation."""
import os

import numpy as np
import pytest
import torch

from vseimageencoder.pipeline import cuda_decode as gpu_decode
from vseimageencoder.images import read, transform
from tests.support.photos import write_photo

#: One 8-bit level after normalisation, at the smallest std (0.224): the largest step two
#: resize kernels that round differently can leave on a pixel.
ONE_LEVEL = 1.0 / 255 / min(transform.IMAGENET_STD)


@pytest.fixture(scope='module')
def jpegs(tmp_path_factory):
    d = tmp_path_factory.mktemp('gpu_decode')
    specs = [('plain.jpg', 900, 600, {}), ('portrait.jpg', 480, 800, {}),
             ('gray.jpg', 700, 500, {'gray': True}), ('progressive.jpg', 1001, 667, {'progressive': True}),
             ('444.jpg', 640, 480, {'subsampling': 0})]
    specs += [('exif%d.jpg' % o, 800, 600, {'orientation': o}) for o in range(2, 9)]
    return [write_photo(d / name, w, h, seed=i, **kw) for i, (name, w, h, kw) in enumerate(specs)]


def test_device_transform_matches_exact(jpegs):
    batch, positions, errors = gpu_decode.load_batch(jpegs, 'cpu')
    assert errors == [] and positions == list(range(len(jpegs)))
    assert batch.shape == (len(jpegs), 3, 224, 224) and batch.dtype == torch.float32
    for k, p in enumerate(jpegs):
        ref = transform.transform(p, resize='exact')
        diff = np.abs(batch[k].numpy() - ref)
        # Within one level everywhere, and almost every pixel identical (an image turned the
        # wrong way or shifted by a pixel is off by tens of levels over most of it).
        assert diff.max() <= ONE_LEVEL * 1.01, (p.name, diff.max())
        assert diff.mean() <= ONE_LEVEL * 0.02, (p.name, diff.mean())


def test_unreadable_files_are_named_in_order(jpegs, tmp_path):
    bad = tmp_path / 'truncated.jpg'
    bad.write_bytes(jpegs[0].read_bytes()[:300])
    junk = tmp_path / 'junk.jpg'
    junk.write_bytes(b'\xff\xd8\xff\xe0 not a jpeg at all')
    fifo = tmp_path / 'pipe.jpg'
    os.mkfifo(str(fifo))
    paths = [jpegs[0], bad, jpegs[1], junk, fifo, jpegs[2]]
    batch, positions, errors = gpu_decode.load_batch(paths, 'cpu')
    assert positions == [0, 2, 5] and batch.shape[0] == 3
    assert [i for i, _ in errors] == [1, 3, 4]
    for i, e in errors:
        assert isinstance(e, read.ImageReadError) and paths[i].name in str(e)
    assert isinstance(errors[2][1], read.NotARegularImageError)


def test_pixel_cap_applies(jpegs, monkeypatch):
    monkeypatch.setattr(read, 'MAX_IMAGE_PIXELS', 1000)
    _, positions, errors = gpu_decode.load_batch(jpegs[:1], 'cpu')
    assert positions == [] and isinstance(errors[0][1], read.ImageTooLargeError)


def test_other_formats_take_the_host_transform(tmp_path):
    png = write_photo(tmp_path / 'x.png', 320, 240, seed=1)
    cmyk = write_photo(tmp_path / 'cmyk.jpg', 320, 240, seed=2, cmyk=True)
    batch, positions, errors = gpu_decode.load_batch([png, cmyk], 'cpu')
    assert errors == [] and positions == [0, 1]
    for k, p in enumerate((png, cmyk)):
        np.testing.assert_array_equal(batch[k].numpy(), transform.transform(p, resize='exact'))


def test_embed_files_on_device_matches_exact(jpegs, small_release):
    from vseimageencoder.pipeline.embed_files import embed_files
    from vseimageencoder.release.checkpoint import load_tower
    from vseimageencoder.model.inference import InferenceTower

    tower, _ = load_tower(str(small_release[0]))
    model = InferenceTower(tower)
    got, ref = [], []
    done, skipped = gpu_decode.embed_files_on_device(model, jpegs, lambda r, p: got.append((r, p)), 5, 'cpu')
    assert (done, skipped) == (len(jpegs), 0)
    assert [i for _, p in got for i in p] == list(range(len(jpegs)))
    embed_files(model, jpegs, lambda r, p: ref.append(r), 5, 'exact', 0)
    a, b = np.concatenate([r for r, _ in got]), np.concatenate(ref)
    cos = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.9999, cos.min()
