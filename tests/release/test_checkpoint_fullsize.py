"""Full-size released architectures (ResNet-152, VGG19) in the exact release layout:
legacy serialisation, DataParallel prefixes, torch-0.3 BN buffers, old VGG classifier keys."""
import numpy as np
import pytest

from tests.support.vsepp_release import reference_embed, write_release_checkpoint

pytestmark = pytest.mark.jina09  # through the jina 0.9 executor, as when it was written


@pytest.mark.parametrize('cnn_type, old_vgg_keys', [('resnet152', False), ('vgg19', True)])
def test_fullsize_release_parity(tmp_path, cnn_type, old_vgg_keys):
    from vseimageencoder import VSEImageEncoder
    folder = tmp_path / ('f30k_vse++_' + cnn_type)
    backbone, fc = write_release_checkpoint(folder / 'model_best.pth.tar', cnn_type, embed_size=1024,
                                            legacy=True, old_vgg_keys=old_vgg_keys, torch03=True, seed=7)
    enc = VSEImageEncoder(model_path=str(folder), channel_axis=3)
    x = np.random.RandomState(5).randn(2, 3, 224, 224).astype(np.float32)
    out = enc.encode(np.ascontiguousarray(np.moveaxis(x, 1, 3)))
    assert out.shape == (2, 1024) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    ref = reference_embed(backbone, fc, x)
    np.testing.assert_allclose(out, ref, atol=5e-5)
    # Deep random networks map all inputs close together, so also check that the part
    # that tells the two images apart matches the reference, not just the shared bulk.
    diff, ref_diff = out[0] - out[1], ref[0] - ref[1]
    assert np.abs(ref_diff).max() > 1e-4
    assert np.abs(diff - ref_diff).max() < 0.05 * np.abs(ref_diff).max()
