"""The executor used directly (no Flow): contracts of encode() and its errors."""
import numpy as np
import pytest

from tests.support.vsepp_release import reference_embed, write_release_checkpoint
from vseimageencoder import VSEImageEncoder
from vseimageencoder.release.checkpoint import CheckpointNotFoundError, UnsafeCheckpointError

pytestmark = pytest.mark.jina09


@pytest.fixture(scope='module')
def encoder(small_release):
    return VSEImageEncoder(model_path=str(small_release[0]))


def _images(n, h=64, w=64, seed=0):
    return np.random.RandomState(seed).randn(n, 3, h, w).astype(np.float32)


def test_subclasses_jina_torch_encoder(encoder):
    from jina.executors.encoders.frameworks import BaseTorchEncoder
    assert isinstance(encoder, BaseTorchEncoder)
    assert encoder.model_path.endswith('model_best.pth.tar')
    assert str(encoder.device) == 'cpu'


def test_encode_shape_dtype_norm_and_values(encoder, small_release):
    _, backbone, fc = small_release
    x = _images(5)
    out = encoder.encode(x)
    assert out.shape == (5, 1024) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out, reference_embed(backbone, fc, x), atol=2e-5)


def test_float64_and_float16_inputs_accepted(encoder):
    x = _images(2)
    ref = encoder.encode(x)
    np.testing.assert_allclose(encoder.encode(x.astype(np.float64)), ref, atol=1e-6)
    assert encoder.encode(x.astype(np.float16)).dtype == np.float32


def test_any_image_size(encoder):
    for h, w in [(32, 32), (97, 131), (224, 224)]:
        assert encoder.encode(_images(1, h, w)).shape == (1, 1024)


def test_empty_batch(encoder):
    out = encoder.encode(np.zeros((0, 3, 224, 224), np.float32))
    assert out.shape == (0, 1024) and out.dtype == np.float32


def test_channel_axis_last(small_release):
    enc_first = VSEImageEncoder(model_path=str(small_release[0]), channel_axis=1)
    enc_last = VSEImageEncoder(model_path=str(small_release[0]), channel_axis=-1)
    x = _images(3)
    np.testing.assert_allclose(enc_last.encode(np.moveaxis(x, 1, -1)), enc_first.encode(x), atol=1e-6)


def test_jina_batching_gives_same_result(small_release):
    x = _images(7, seed=4)
    whole = VSEImageEncoder(model_path=str(small_release[0])).encode(x)
    batched_enc = VSEImageEncoder(model_path=str(small_release[0]), metas={'batch_size': 3})
    assert batched_enc.batch_size == 3
    calls = []
    inner = batched_enc.model.forward

    def counting(t):
        calls.append(t.shape[0])
        return inner(t)

    batched_enc.model.forward = counting
    np.testing.assert_allclose(batched_enc.encode(x), whole, atol=1e-6)
    assert calls == [3, 3, 1]


def test_fused_for_the_metas_batch_size_in_reduced_precision(small_release):
    """fuse=None: a bf16 tower with metas batch_size is fused for it at post_init; fp32, or no
    batch_size, is not; fuse=True fuses fp32 too and still gives the reference."""
    from vseimageencoder.model.onednn_graph import fusion_available
    if not fusion_available():
        pytest.skip('this torch has no TorchScript oneDNN fuser')
    path, backbone, fc = small_release
    x = _images(7, 224, 224, seed=6)  # batches of 3, 3, 1: the fused size and another

    def encoder(**kw):
        return VSEImageEncoder(model_path=str(path), **kw)

    auto, off = encoder(precision='bf16', metas={'batch_size': 3}), encoder(precision='bf16', fuse=False,
                                                                            metas={'batch_size': 3})
    assert auto.model.fused_batch_size == 3 and off.model.fused_batch_size is None
    a, o = auto.encode(x), off.encode(x)
    assert float(((a * o).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(o, axis=1)).min()) > 0.999
    assert encoder(precision='bf16').model.fused_batch_size is None  # no batch size to fuse for
    assert encoder(metas={'batch_size': 3}).model.fused_batch_size is None  # fp32
    forced = encoder(fuse=True, metas={'batch_size': 3})
    assert forced.model.fused_batch_size == 3
    np.testing.assert_allclose(forced.encode(x), reference_embed(backbone, fc, x), atol=1e-4)
    with pytest.raises(TypeError, match='fuse'):
        encoder(fuse='yes')


def test_no_autograd(encoder):
    import torch
    out = encoder._encode_batches(_images(1))
    assert isinstance(out, np.ndarray)
    assert not any(p.requires_grad for p in encoder.model.parameters())
    assert torch.is_grad_enabled()  # nothing leaked into global state


@pytest.mark.parametrize('data, exc, words', [
    (np.zeros((2, 4, 32, 32), np.float32), ValueError, ['(2, 4, 32, 32)', '4 channels', 'channel_axis=1']),
    (np.zeros((2, 32, 32, 3), np.float32), ValueError, ['(2, 32, 32, 3)', 'channels']),
    (np.zeros((3, 32, 32), np.float32), ValueError, ['(3, 32, 32)', '3-d']),
    (np.zeros((1, 1, 3, 32, 32), np.float32), ValueError, ['5-d']),
    (np.array([['a'] * 4] * 2), ValueError, ['2-d']),
    (np.empty((1, 3, 8, 8), dtype=object), TypeError, ['dtype object']),
    (np.zeros((1, 3, 8, 8), dtype=np.complex64), TypeError, ['complex64']),
    (np.zeros((1, 3, 8, 8), dtype=bool), TypeError, ['bool']),
    (np.zeros((1, 3, 8, 8), dtype='<U1'), TypeError, ['<U1']),
    (np.zeros((1, 3, 8, 8), dtype=np.int64), TypeError, ['int64', 'float', 'uint8']),
    (np.zeros((1, 3, 0, 8), np.float32), ValueError, ['zero height or width']),
])
def test_bad_input_named(encoder, data, exc, words):
    with pytest.raises(exc) as e:
        encoder.encode(data)
    for w in words:
        assert w in str(e.value)


def test_too_small_for_backbone_is_clear(tmp_path):
    path = tmp_path / 'model_best.pth.tar'
    write_release_checkpoint(path, 'vgg11', embed_size=8, seed=1)
    enc = VSEImageEncoder(model_path=str(path))
    with pytest.raises(ValueError, match=r'vgg11 backbone cannot encode a batch of shape \(1, 3, 16, 16\)'):
        enc.encode(_images(1, 16, 16))


@pytest.mark.parametrize('axis', [0, 4, -5, 1.5, 'x'])
def test_bad_channel_axis(small_release, axis):
    with pytest.raises(ValueError, match='channel_axis'):
        VSEImageEncoder(model_path=str(small_release[0]), channel_axis=axis)


def test_missing_model_names_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointNotFoundError, match=str(tmp_path / 'nowhere')):
        VSEImageEncoder(model_path='nowhere')


def test_hostile_checkpoint_refused_by_executor(tmp_path):
    import os
    import torch

    marker = tmp_path / 'ran'

    class Evil:
        def __reduce__(self):
            return (os.system, ('touch %s' % marker,))

    path = tmp_path / 'model_best.pth.tar'
    torch.save({'model': [Evil()], 'opt': None}, str(path), _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError):
        VSEImageEncoder(model_path=str(tmp_path))
    assert not marker.exists()


def test_precomp_encoder(tmp_path):
    path = tmp_path / 'model_best.pth.tar'
    _, fc = write_release_checkpoint(path, precomp=True, img_dim=4096, embed_size=1024, seed=2)
    enc = VSEImageEncoder(model_path=str(tmp_path))
    feats = np.random.RandomState(0).rand(3, 4096).astype(np.float32)
    out = enc.encode(feats)
    np.testing.assert_allclose(out, reference_embed(None, fc, feats), atol=2e-5)
    with pytest.raises(ValueError, match=r'\(3, 2048\).*\(B, 4096\)'):
        enc.encode(feats[:, :2048])
    assert enc.encode(np.zeros((0, 4096), np.float32)).shape == (0, 1024)


def test_old_hub_parameter_names_still_load(small_release):
    enc = VSEImageEncoder(path=str(small_release[0]), pool_strategy='mean')
    assert enc.model_path == str(small_release[0])
    assert enc.encode(_images(1)).shape == (1, 1024)
