import argparse
import os
import pickle
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch

from tests.support.vsepp_release import reference_embed, write_release_checkpoint
from vseimageencoder.release import checkpoint as ck
from vseimageencoder.model.image import build_tower


# ----------------------------------------------------------------------- key remaps

def test_remap_resnet_dataparallel_prefix():
    sd = {'cnn.module.conv1.weight': 1, 'cnn.module.layer1.0.bn1.running_mean': 2, 'fc.weight': 3}
    assert ck.remap_state_dict(sd) == {'cnn.conv1.weight': 1, 'cnn.layer1.0.bn1.running_mean': 2,
                                       'fc.weight': 3}


def test_remap_vgg_features_prefix_keeps_new_classifier():
    sd = {'cnn.features.module.0.weight': 1, 'cnn.classifier.0.weight': 2, 'cnn.classifier.3.bias': 3}
    assert ck.remap_state_dict(sd) == {'cnn.features.0.weight': 1, 'cnn.classifier.0.weight': 2,
                                       'cnn.classifier.3.bias': 3}


def test_remap_old_vgg_classifier_indices():
    sd = {'cnn.features.module.0.weight': 1, 'cnn.classifier.1.weight': 2, 'cnn.classifier.1.bias': 3,
          'cnn.classifier.4.weight': 4, 'cnn.classifier.4.bias': 5, 'fc.bias': 6}
    assert ck.remap_state_dict(sd) == {'cnn.features.0.weight': 1, 'cnn.classifier.0.weight': 2,
                                       'cnn.classifier.0.bias': 3, 'cnn.classifier.3.weight': 4,
                                       'cnn.classifier.3.bias': 5, 'fc.bias': 6}


def test_remap_whole_model_dataparallel():
    assert ck.remap_state_dict({'module.fc.weight': 1}) == {'fc.weight': 1}


# ----------------------------------------------------------------------- options

def _ckpt(opt, model=None):
    return {'model': model if model is not None else [{}, {}], 'opt': opt}


def test_options_from_namespace():
    opt = argparse.Namespace(cnn_type='resnet152', embed_size=512, img_dim=2048, no_imgnorm=True,
                             use_abs=True, data_name='coco', finetune=True)
    o = ck.read_options(_ckpt(opt), 'x')
    assert o == ck.TowerOptions('resnet152', 512, 2048, True, True, 'coco')
    assert not o.precomputed


def test_options_from_dict_with_defaults():
    o = ck.read_options(_ckpt({'data_name': 'f30k'}), 'x')
    assert (o.cnn_type, o.embed_size, o.img_dim, o.no_imgnorm, o.use_abs) == ('vgg19', 1024, 4096, False, False)


def test_options_precomp_has_no_cnn():
    o = ck.read_options(_ckpt({'data_name': 'coco_precomp', 'cnn_type': 'vgg19'}), 'x')
    assert o.precomputed and o.cnn_type is None


@pytest.mark.parametrize('opt, fault', [
    ({'cnn_type': 'densenet121'}, 'densenet121'),
    ({'embed_size': 'big'}, 'embed_size'),
    ({'embed_size': 0}, 'embed_size'),
    (['not', 'options'], "'opt' is a list"),
])
def test_bad_options_named(opt, fault):
    with pytest.raises(ck.NotVSECheckpointError, match='x.pth') as e:
        ck.read_options(_ckpt(opt), 'x.pth')
    assert fault in str(e.value)


def test_missing_opt_is_not_vse():
    with pytest.raises(ck.NotVSECheckpointError, match="'model' and 'opt'"):
        ck.read_options({'state_dict': {}}, 'a.pth')


# ----------------------------------------------------------------------- path resolution

def test_missing_checkpoint_names_every_path_tried(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = tmp_path / 'other'
    other.mkdir()
    with pytest.raises(ck.CheckpointNotFoundError) as e:
        ck.resolve_checkpoint_path('pretrained', [other])
    msg = str(e.value)
    assert str(tmp_path / 'pretrained') in msg and str(other / 'pretrained') in msg
    assert 'vseimageencoder download f30k_vse++_vggfull --dest pretrained' in msg
    assert isinstance(e.value, FileNotFoundError)


def test_folder_resolves_to_model_best_and_cwd_wins(tmp_path, monkeypatch):
    (tmp_path / 'cwd' / 'pretrained').mkdir(parents=True)
    (tmp_path / 'pkg' / 'pretrained').mkdir(parents=True)
    (tmp_path / 'cwd' / 'pretrained' / ck.CHECKPOINT_NAME).write_bytes(b'x')
    (tmp_path / 'pkg' / 'pretrained' / ck.CHECKPOINT_NAME).write_bytes(b'y')
    monkeypatch.chdir(tmp_path / 'cwd')
    got = ck.resolve_checkpoint_path('pretrained', [tmp_path / 'pkg'])
    assert got == tmp_path / 'cwd' / 'pretrained' / ck.CHECKPOINT_NAME
    (got).unlink()
    got = ck.resolve_checkpoint_path('pretrained', [tmp_path / 'pkg'])
    assert got == tmp_path / 'pkg' / 'pretrained' / ck.CHECKPOINT_NAME


def test_absolute_file_path(tmp_path):
    f = tmp_path / 'm.pth'
    f.write_bytes(b'x')
    assert ck.resolve_checkpoint_path(str(f)) == f


# ----------------------------------------------------------------------- hostile and foreign files

class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ('touch %s' % self.marker,))


@pytest.mark.parametrize('legacy', [True, False])
def test_hostile_pickle_refused_without_running(tmp_path, legacy):
    marker = tmp_path / 'PWNED'
    path = tmp_path / 'model_best.pth.tar'
    torch.save({'model': [_Hostile(marker)], 'opt': argparse.Namespace()}, str(path),
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(ck.UnsafeCheckpointError) as e:
        ck.load_tower(path)
    assert str(path) in str(e.value) and 'system' in str(e.value)
    assert not marker.exists()


def test_hostile_class_in_opt_refused(tmp_path):
    path = tmp_path / 'm.pth'
    torch.save({'model': [{}], 'opt': OrderedDictSubclass()}, str(path))
    with pytest.raises(ck.UnsafeCheckpointError, match='OrderedDictSubclass'):
        ck.read_checkpoint(path)


class OrderedDictSubclass(OrderedDict):
    pass


def _write_zip(path):
    with zipfile.ZipFile(str(path), 'w') as z:
        z.writestr('a.txt', 'x')


@pytest.mark.parametrize('writer', [
    lambda p: p.write_text('no checkpoint here\n'),
    lambda p: p.write_bytes(b''),
    lambda p: p.write_bytes(np.random.RandomState(0).bytes(500)),
    lambda p: p.write_bytes(pickle.dumps({'a': 1}, protocol=4)),
    _write_zip,
], ids=['text', 'empty', 'random', 'plain-pickle', 'foreign-zip'])
def test_not_a_checkpoint(tmp_path, writer):
    path = tmp_path / 'model_best.pth.tar'
    writer(path)
    with pytest.raises(ck.NotACheckpointError, match=str(path)):
        ck.load_tower(path)


def test_truncated_checkpoint(tmp_path, small_release):
    data = small_release[0].read_bytes()
    path = tmp_path / 'cut.pth.tar'
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ck.NotACheckpointError, match='cut.pth.tar'):
        ck.load_tower(path)


def test_torch_file_that_is_not_vse(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(1)}, str(path))
    with pytest.raises(ck.NotVSECheckpointError, match='resnet.pth'):
        ck.load_tower(path)


def _save(path, image_sd, **opt):
    o = dict(data_name='f30k', cnn_type='resnet18', embed_size=8)
    o.update(opt)
    torch.save({'epoch': 1, 'model': [image_sd, {}], 'opt': argparse.Namespace(**o)}, str(path))


def test_missing_and_unexpected_keys_listed(tmp_path, small_release):
    sd = torch.load(str(small_release[0]), weights_only=False)['model'][0]
    del sd['cnn.module.layer4.1.conv2.weight']
    sd['cnn.module.extra.weight'] = torch.zeros(1)
    path = tmp_path / 'broken.pth.tar'
    _save(path, sd, embed_size=1024)
    with pytest.raises(ck.NotVSECheckpointError) as e:
        ck.load_tower(path)
    msg = str(e.value)
    assert 'layer4.1.conv2.weight' in msg and 'extra.weight' in msg and 'broken.pth.tar' in msg


def test_wrong_shape_named(tmp_path, small_release):
    sd = torch.load(str(small_release[0]), weights_only=False)['model'][0]
    sd['cnn.module.conv1.weight'] = torch.zeros(64, 3, 3, 3)
    path = tmp_path / 'shape.pth.tar'
    _save(path, sd, embed_size=1024)
    with pytest.raises(ck.NotVSECheckpointError, match=r'cnn.conv1.weight is \(64, 3, 3, 3\)'):
        ck.load_tower(path)


def test_embed_size_mismatch(tmp_path):
    path = tmp_path / 'p.pth'
    _save(path, {'fc.weight': torch.zeros(16, 4096), 'fc.bias': torch.zeros(16)},
          data_name='f30k_precomp', embed_size=8)
    with pytest.raises(ck.NotVSECheckpointError, match=r'fc.weight has shape \(16, 4096\), but embed_size is 8'):
        ck.load_tower(path)


def test_precomp_flag_with_backbone_weights(tmp_path, small_release):
    sd = torch.load(str(small_release[0]), weights_only=False)['model'][0]
    path = tmp_path / 'p.pth'
    _save(path, sd, data_name='f30k_precomp', embed_size=1024)
    with pytest.raises(ck.NotVSECheckpointError, match='precomputed features'):
        ck.load_tower(path)


def test_backbone_missing(tmp_path):
    path = tmp_path / 'p.pth'
    _save(path, {'fc.weight': torch.zeros(8, 512), 'fc.bias': torch.zeros(8)})
    with pytest.raises(ck.NotVSECheckpointError, match='no cnn'):
        ck.load_tower(path)


# ----------------------------------------------------------------------- loading

@pytest.mark.parametrize('cnn_type', ['resnet152', 'vgg19'])
def test_tower_is_built_without_weight_init(monkeypatch, cnn_type):
    calls = []

    def counting(name):
        real = getattr(torch.nn.init, name)

        def fn(*a, **k):
            calls.append(name)
            return real(*a, **k)
        return fn

    for name in ('kaiming_normal_', 'kaiming_uniform_', 'normal_', 'uniform_', 'constant_'):
        monkeypatch.setattr(torch.nn.init, name, counting(name))
    patched = torch.nn.init.kaiming_normal_
    tower = build_tower(cnn_type, 1024)
    assert calls == []
    assert torch.nn.init.kaiming_normal_ is patched  # restored afterwards
    torch.nn.Linear(3, 3)
    assert calls  # and initialisation works again outside the build
    assert tower.fc.weight.shape == (1024, tower.feature_dim)


@pytest.mark.parametrize('legacy', [True, False], ids=['legacy', 'zip'])
@pytest.mark.parametrize('cnn_type, old_keys', [('resnet18', False), ('vgg11', True), ('vgg11_bn', False),
                                                ('resnet34', False)])
def test_load_matches_reference(tmp_path, cnn_type, old_keys, legacy):
    path = tmp_path / 'model_best.pth.tar'
    backbone, fc = write_release_checkpoint(path, cnn_type, embed_size=32, legacy=legacy,
                                            old_vgg_keys=old_keys, seed=11)
    tower, opts = ck.load_tower(path)
    assert opts.cnn_type == cnn_type and opts.embed_size == 32
    assert not tower.training
    assert not any(p.requires_grad for p in tower.parameters())
    assert all(p.dtype == torch.float32 for p in tower.parameters())
    x = np.random.RandomState(1).randn(3, 3, 64, 80).astype(np.float32)
    with torch.no_grad():
        got = tower(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, reference_embed(backbone, fc, x), atol=2e-5)


@pytest.mark.parametrize('no_imgnorm, use_abs', [(True, False), (False, True), (True, True)])
def test_options_no_imgnorm_use_abs(tmp_path, no_imgnorm, use_abs):
    path = tmp_path / 'model_best.pth.tar'
    backbone, fc = write_release_checkpoint(path, 'resnet18', embed_size=16, no_imgnorm=no_imgnorm,
                                            use_abs=use_abs, seed=5)
    tower, _ = ck.load_tower(path)
    x = np.random.RandomState(2).randn(2, 3, 48, 48).astype(np.float32)
    with torch.no_grad():
        got = tower(torch.from_numpy(x)).numpy()
    ref = reference_embed(backbone, fc, x, no_imgnorm=no_imgnorm, use_abs=use_abs)
    np.testing.assert_allclose(got, ref, atol=2e-5)
    norms = np.linalg.norm(got, axis=1)
    if no_imgnorm:
        assert not np.allclose(norms, 1.0, atol=1e-3)
    else:
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    if use_abs:
        assert (got >= 0).all()


def test_precomp_checkpoint(tmp_path):
    path = tmp_path / 'model_best.pth.tar'
    _, fc = write_release_checkpoint(path, precomp=True, img_dim=4096, embed_size=1024, seed=9)
    tower, opts = ck.load_tower(path)
    assert opts.precomputed and tower.cnn is None
    x = np.random.RandomState(3).rand(4, 4096).astype(np.float32)
    with torch.no_grad():
        got = tower(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, reference_embed(None, fc, x), atol=2e-5)


@pytest.mark.parametrize('cnn_type', ['resnet152', 'vgg19'])
def test_release_keys_round_trip(cnn_type):
    # One table maps keys both ways: writing the release layout and reading it back is the
    # identity, and the written keys carry the DataParallel prefix the releases have.
    from vseimageencoder.model.image import build_tower
    tower = build_tower(cnn_type, embed_size=8, img_dim=4096 if cnn_type.startswith('vgg') else 2048)
    sd = tower.state_dict()
    written = ck.release_state_dict(sd, cnn_type)
    wrapped = 'cnn.features.module.' if cnn_type.startswith('vgg') else 'cnn.module.'
    assert any(k.startswith(wrapped) for k in written)
    back = ck.remap_state_dict(written)
    assert back.keys() == sd.keys()
    assert all(back[k].numpy().tobytes() == sd[k].numpy().tobytes() for k in sd)  # uninitialised: NaN-safe
