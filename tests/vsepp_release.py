"""Writes checkpoints in the exact layout of the VSE++ releases, with random weights.

Deliberately independent of the package: the key layout is spelled out here from the
release facts (DataParallel prefixes, old VGG classifier indices, legacy serialisation),
and :func:`reference_embed` computes the tower the straightforward way.
"""
import argparse
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision


def _release_opt(cnn_type, embed_size, img_dim, data_name, no_imgnorm, use_abs):
    # The fields of VSE++'s train.py options, as pickled in the released files.
    return argparse.Namespace(
        data_path='/w/31/faghri/vsepp_data/', data_name=data_name, vocab_path='./vocab/',
        margin=0.2, num_epochs=30, batch_size=128, word_dim=300, embed_size=embed_size,
        grad_clip=2.0, crop_size=224, num_layers=1, learning_rate=0.0002, lr_update=15,
        workers=10, log_step=10, val_step=500, logger_name='runs/test', resume='',
        max_violation=True, img_dim=img_dim, finetune=False, cnn_type=cnn_type,
        use_restval=False, measure='cosine', use_abs=use_abs, no_imgnorm=no_imgnorm,
        reset_train=False, vocab_size=11000)


def cut_as_vsepp(net, cnn_type):
    """Drop the classifier's last layer as VSE++ does; returns the feature width."""
    if cnn_type.startswith('vgg'):
        width = net.classifier[6].in_features
        net.classifier = torch.nn.Sequential(*list(net.classifier.children())[:-1])
    else:
        width = net.fc.in_features
        net.fc = torch.nn.Identity()
    return width


def make_backbone(cnn_type, seed):
    """A randomly initialised torchvision classifier, cut as VSE++ cuts it; and its width."""
    torch.manual_seed(seed)
    net = getattr(torchvision.models, cnn_type)(weights=None)
    width = cut_as_vsepp(net, cnn_type)
    # Random BN statistics, so that a load that forgot them would show.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval(), width


def release_image_state_dict(backbone, fc, cnn_type, old_vgg_keys=False, torch03=False):
    """The image encoder's state dict as the release code saved it."""
    sd = OrderedDict()
    if backbone is not None:
        for k, v in backbone.state_dict().items():
            if torch03 and k.endswith('num_batches_tracked'):
                continue  # torch 0.3 (2017) had no such buffer
            if cnn_type.startswith('vgg'):
                if k.startswith('features.'):
                    k = 'features.module.' + k[len('features.'):]
                elif old_vgg_keys and k.startswith('classifier.'):
                    idx, rest = k[len('classifier.'):].split('.', 1)
                    k = 'classifier.%d.%s' % ({0: 1, 3: 4}[int(idx)], rest)
                sd['cnn.' + k] = v.clone()
            else:
                sd['cnn.module.' + k] = v.clone()
    sd['fc.weight'] = fc.weight.detach().clone()
    sd['fc.bias'] = fc.bias.detach().clone()
    return sd


def write_release_checkpoint(path, cnn_type='resnet18', embed_size=1024, img_dim=4096,
                             precomp=False, no_imgnorm=False, use_abs=False, legacy=True,
                             old_vgg_keys=False, torch03=True, seed=0):
    """Write a checkpoint in the release layout; returns (backbone or None, fc) for reference."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if precomp:
        backbone, width = None, img_dim
        data_name = 'f30k_precomp'
    else:
        backbone, width = make_backbone(cnn_type, seed)
        data_name = 'f30k'
    torch.manual_seed(seed + 1)
    fc = torch.nn.Linear(width, embed_size)
    text_sd = OrderedDict([('embed.weight', torch.randn(20, 8)), ('rnn.weight_ih_l0', torch.randn(12, 8))])
    ckpt = {
        'epoch': 14,
        'model': [release_image_state_dict(backbone, fc, cnn_type, old_vgg_keys, torch03), text_sd],
        'best_rsum': 403.2,
        'opt': _release_opt(cnn_type, embed_size, img_dim, data_name, no_imgnorm, use_abs),
        'Eiters': 33000,
    }
    torch.save(ckpt, str(path), _use_new_zipfile_serialization=not legacy)
    return backbone, fc


@torch.no_grad()
def reference_embed(backbone, fc, x, no_imgnorm=False, use_abs=False):
    """The tower computed the straightforward way, float64 for a trustworthy reference."""
    x = torch.as_tensor(x, dtype=torch.float32)
    if backbone is not None:
        feats = backbone.double()(x.double())
        feats = F.normalize(feats, dim=1)
    else:
        feats = x.double()
    out = F.linear(feats, fc.weight.double(), fc.bias.double())
    if not no_imgnorm:
        out = F.normalize(out, dim=1)
    if use_abs:
        out = out.abs()
    if backbone is not None:
        backbone.float()
    return out.numpy()
