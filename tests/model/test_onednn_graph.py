"""The fused CPU tower (oneDNN Graph through TorchScript): same embeddings, any batch size,
shared by threads, chosen by image count in bulk jobs, refused when the trace is wrong."""
import logging
import threading

import numpy as np
import pytest
import torch
from tests.support.images import write_noise_images
from tests.support.vsepp_release import reference_embed
from vseimageencoder.pipeline.embed_files import FUSE_MIN_IMAGES, embed_files
from vseimageencoder.release.checkpoint import load_tower
from vseimageencoder.model.onednn_graph import fuse_backbone, fusion_available
from vseimageencoder.model.inference import InferenceTower

pytestmark = pytest.mark.skipif(not fusion_available(), reason='this torch has no TorchScript oneDNN fuser')


def _images(n, seed=4):
    return torch.from_numpy(np.random.RandomState(seed).randn(n, 3, 224, 224).astype(np.float32))


def _cosines(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope='module')
def fused(small_release):
    path, backbone, fc = small_release
    model = InferenceTower(load_tower(path)[0], 'fp32')
    assert model.fuse(4)
    return model, backbone, fc


def test_fused_tower_gives_the_reference_embeddings_at_any_batch_size(fused):
    model, backbone, fc = fused
    assert model.fused_batch_size == 4 and model._fused is not None
    for n in (4, 3, 1, 4):  # the fused shape, others (unfused graph), the fused one again
        x = _images(n, seed=n)
        out = model(x).numpy()
        assert out.shape == (n, 1024) and out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
        ref = reference_embed(backbone, fc, x.numpy())
        np.testing.assert_allclose(out, ref, atol=1e-4)


def test_fusing_again_for_the_same_batch_size_is_free_and_state_dict_unchanged(fused):
    model, _, _ = fused
    before = model._fused
    assert model.fuse(4) and model._fused is before
    assert not any(k.startswith('_fused') for k in model.state_dict())


def test_threads_share_a_fused_tower(fused):
    model, _, _ = fused
    x = _images(4, seed=11)
    alone = model(x).numpy()
    got = [None] * 3

    def lane(k):
        torch.set_num_threads(1)
        got[k] = model(x).numpy()

    threads = [threading.Thread(target=lane, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g in got:
        np.testing.assert_allclose(g, alone, atol=1e-5)


def test_reduced_precision_fused_stays_close(small_release):
    path, backbone, fc = small_release
    model = InferenceTower(load_tower(path)[0], 'bf16')
    assert model.fuse(2)
    x = _images(2, seed=5)
    assert _cosines(model(x).numpy(), reference_embed(backbone, fc, x.numpy())).min() >= 0.999


class _BatchDependent(torch.nn.Module):
    """Branches in Python on the batch size: a trace at batch 1 records the wrong branch."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        if x.shape[0] == 1:
            return y
        return -y


@pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning')
def test_a_fused_graph_that_disagrees_is_refused(caplog):
    net = _BatchDependent().eval()
    with caplog.at_level(logging.WARNING, logger='vseimageencoder.model.onednn_graph'):
        assert fuse_backbone(net, torch.randn(3, 3, 32, 32)) is None
    assert 'disagrees' in caplog.text and '_BatchDependent' in caplog.text


def test_an_untraceable_backbone_is_refused_with_the_reason(caplog):
    class Untraceable(torch.nn.Module):
        def forward(self, x):
            return {'features': x}  # a dict output: trace refuses it (strict mode)

    with caplog.at_level(logging.WARNING, logger='vseimageencoder.model.onednn_graph'):
        assert fuse_backbone(Untraceable().eval(), torch.randn(2, 3, 8, 8)) is None
    assert 'could not fuse the Untraceable backbone' in caplog.text


def test_fuse_is_a_no_op_for_precomputed_features(tmp_path):
    from tests.support.vsepp_release import write_release_checkpoint
    path = tmp_path / 'model_best.pth.tar'
    write_release_checkpoint(path, precomp=True, embed_size=64, img_dim=32, text=False)
    model = InferenceTower(load_tower(path)[0], 'fp32')
    assert not model.fuse(4) and model.fused_batch_size is None


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    return write_noise_images(tmp_path_factory.mktemp('fuse-photos'), 6, 90, 120, seed=2, suffix='.jpg')


def _embed(model, paths, **kw):
    rows = []
    embed_files(model, paths, lambda r, pos: rows.append(r), 2, 'fast', **kw)
    return np.concatenate(rows)


@pytest.mark.parametrize('readers', [None, 0])
def test_embed_files_fuses_bulk_jobs_only(small_release, photos, readers):
    path = small_release[0]
    assert len(photos) < FUSE_MIN_IMAGES
    auto = InferenceTower(load_tower(path)[0], 'fp32')
    plain = _embed(auto, photos, readers=readers)
    assert auto.fused_batch_size is None  # a handful of images: not worth the start-up
    forced = InferenceTower(load_tower(path)[0], 'fp32')
    rows = _embed(forced, photos, readers=readers, fuse=True)
    # Lanes fuse for their batch (6 images, batches of 2, on the lanes there are), the main
    # thread for the batch size.
    assert forced.fused_batch_size == 2
    np.testing.assert_allclose(rows, plain, atol=1e-4)
    off = InferenceTower(load_tower(path)[0], 'fp32')
    _embed(off, photos, readers=readers, fuse=False)
    assert off.fused_batch_size is None


def test_auto_fuses_reduced_precision_from_the_threshold_on(small_release, photos, monkeypatch):
    from vseimageencoder.pipeline import embed_files as batch_embed
    path = small_release[0]
    monkeypatch.setattr(batch_embed, 'FUSE_MIN_IMAGES', len(photos))  # as if this were a bulk job
    fp32 = InferenceTower(load_tower(path)[0], 'fp32')
    _embed(fp32, photos)
    assert fp32.fused_batch_size is None  # fp32 gains little for its cost: only when asked
    bf16 = InferenceTower(load_tower(path)[0], 'bf16')
    _embed(bf16, photos)
    assert bf16.fused_batch_size == 2
    monkeypatch.setattr(batch_embed, 'FUSE_MIN_IMAGES', len(photos) + 1)
    fewer = InferenceTower(load_tower(path)[0], 'bf16')
    _embed(fewer, photos)
    assert fewer.fused_batch_size is None


def test_serve_fuses_the_image_tower_for_single_photo_queries(tmp_path, caplog):
    """The search service behind ``serve``: auto fuses a bf16 tower at batch 1 (a lone photo
    query) and not an fp32 one; fused or not, photo queries alone and together find the same
    images with the same scores."""
    from tests.support.serving_web import write_model, write_photos
    from vseimageencoder.index import update_index
    from vseimageencoder.serve import SearchService
    from vseimageencoder.serve.uploads import upload_pixels

    model = write_model(tmp_path / 'model')
    photos = write_photos(tmp_path / 'photos')
    update_index(tmp_path / 'idx', [tmp_path / 'photos'], model_path=model, precision='bf16', fuse=False)
    queries = [upload_pixels(p.read_bytes(), 'fast') for p in photos[:3]]
    answers = {}
    for precision, fuse in (('bf16', None), ('bf16', False), ('fp32', None)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger='vseimageencoder'):
            service = SearchService(tmp_path / 'idx', model, precision=precision, refresh_seconds=0, fuse=fuse)
        try:
            expect_fused = precision == 'bf16' and fuse is None
            assert service.fused is expect_fused
            assert service.image.model.fused_batch_size == (1 if expect_fused else None)
            assert ('runs fused for single photo queries' in caplog.text) is expect_fused
            alone = [service.search_pixels(q, 4) for q in queries]
            together = [f.result(60) for f in [service.submit('pixels', q, 4) for q in queries]]
        finally:
            service.close()
        answers[(precision, fuse)] = (alone, together)
    for alone, together in answers.values():
        for a, b in zip(alone, together):  # one photo a pass against several in one pass
            assert [h.id for h in a] == [h.id for h in b]
            np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=2e-3)
    fused, eager = answers[('bf16', None)][0], answers[('bf16', False)][0]
    for f, e in zip(fused, eager):
        assert f[0].id == e[0].id  # each photo finds itself first
        np.testing.assert_allclose([h.score for h in f], [h.score for h in e], atol=2e-3)
