"""The fast inference path: batch-norm folding, channels-last, reduced precision."""
import numpy as np
import pytest
import torch

from tests.support.vsepp_release import reference_embed, write_release_checkpoint
from vseimageencoder.release.checkpoint import load_tower
from vseimageencoder.model.inference import (InferenceTower, cpu_has_fast_bf16, fold_batchnorms,
                                       resolve_precision)


@pytest.fixture(scope='module', params=['resnet18', 'vgg11_bn'])
def release(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param) / 'model_best.pth.tar'
    backbone, fc = write_release_checkpoint(path, request.param, embed_size=256, seed=21)
    return path, backbone, fc


def _images(n=3):
    return np.random.RandomState(9).randn(n, 3, 64, 64).astype(np.float32)


def test_fold_batchnorms_counts_and_keeps_values(release):
    path, backbone, fc = release
    tower, _ = load_tower(path)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in tower.cnn.modules())
    assert n_bn > 0
    assert fold_batchnorms(tower.cnn) == n_bn
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in tower.cnn.modules())
    with torch.no_grad():
        got = tower(torch.from_numpy(_images())).numpy()
    np.testing.assert_allclose(got, reference_embed(backbone, fc, _images()), atol=2e-5)


@pytest.mark.parametrize('precision', ['fp32', 'bf16', 'fp16'])
def test_precisions_close_to_fp32(release, precision):
    path, backbone, fc = release
    tower, _ = load_tower(path)
    model = InferenceTower(tower, precision=precision)
    assert model.precision == precision
    out = model(torch.from_numpy(_images())).numpy()
    assert out.dtype == np.float32 and out.shape == (3, 256)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    ref = reference_embed(backbone, fc, _images())
    cos = (out * ref).sum(1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.999, cos
    if precision == 'fp32':
        np.testing.assert_allclose(out, ref, atol=2e-5)


def test_channels_last_weights(release):
    tower, _ = load_tower(release[0])
    model = InferenceTower(tower)
    conv = next(m for m in model.tower.cnn.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_resolve_precision():
    assert resolve_precision('fp32') == 'fp32'
    assert resolve_precision('bf16') == 'bf16'
    assert resolve_precision('auto', 'cpu') == ('bf16' if cpu_has_fast_bf16() else 'fp32')
    assert resolve_precision('auto', 'cuda:0') == 'fp16'
    with pytest.raises(ValueError, match="precision='int8'"):
        resolve_precision('int8')


@pytest.mark.jina09
def test_executor_precision_from_yaml(tmp_path, release):
    from jina.executors import BaseExecutor
    import vseimageencoder.jina09.executor  # noqa: F401  registers our tag over jina's bundled copy
    path = release[0]
    y = tmp_path / 'enc.yml'
    y.write_text('!VSEImageEncoder\nwith:\n  model_path: %s\n  precision: bf16\n' % path)
    enc = BaseExecutor.load_config(str(y))
    assert enc.precision == 'bf16' and enc.model.precision == 'bf16'
    out = enc.encode(_images(2))
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


@pytest.mark.jina09
def test_executor_rejects_unknown_precision(release):
    from vseimageencoder import VSEImageEncoder
    with pytest.raises(ValueError, match="precision='half'"):
        VSEImageEncoder(model_path=str(release[0]), precision='half')


def test_fp16_overflow_is_an_error_not_nan(tmp_path):
    path = tmp_path / 'model_best.pth.tar'
    write_release_checkpoint(path, 'resnet18', embed_size=16, seed=3)
    tower, _ = load_tower(path)
    model = InferenceTower(tower, precision='fp16')
    huge = torch.full((1, 3, 64, 64), 6.0e4)
    with pytest.raises(ValueError, match='fp16 overflowed'):
        model(huge)
