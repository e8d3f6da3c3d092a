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


def _release_opt(cnn_type, embed_size, img_dim, data_name, no_imgnorm, use_abs,
                 vocab_size=11000, word_dim=300, num_layers=1):
    # The fields of VSE++'s train.py options, as pickled in the released files.
    return argparse.Namespace(
        data_path='/w/31/faghri/vsepp_data/', data_name=data_name, vocab_path='./vocab/',
        margin=0.2, num_epochs=30, batch_size=128, word_dim=word_dim, embed_size=embed_size,
        grad_clip=2.0, crop_size=224, num_layers=num_layers, learning_rate=0.0002, lr_update=15,
        workers=10, log_step=10, val_step=500, logger_name='runs/test', resume='',
        max_violation=True, img_dim=img_dim, finetune=False, cnn_type=cnn_type,
        use_restval=False, measure='cosine', use_abs=use_abs, no_imgnorm=no_imgnorm,
        reset_train=False, vocab_size=vocab_size)


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


def make_text_state_dict(vocab_size, word_dim, embed_size, num_layers=1, seed=0):
    """VSE++'s EncoderText weights (embed, then a GRU), random, keyed as released."""
    g = torch.Generator().manual_seed(seed + 7)
    sd = OrderedDict()
    sd['embed.weight'] = torch.empty(vocab_size, word_dim).uniform_(-0.1, 0.1, generator=g)
    bound = embed_size ** -0.5
    for layer in range(num_layers):
        fan_in = word_dim if layer == 0 else embed_size
        for name, shape in (('weight_ih', (3 * embed_size, fan_in)), ('weight_hh', (3 * embed_size, embed_size)),
                            ('bias_ih', (3 * embed_size,)), ('bias_hh', (3 * embed_size,))):
            sd['rnn.%s_l%d' % (name, layer)] = torch.empty(*shape).uniform_(-bound, bound, generator=g)
    return sd


def write_release_checkpoint(path, cnn_type='resnet18', embed_size=1024, img_dim=4096,
                             precomp=False, no_imgnorm=False, use_abs=False, legacy=True,
                             old_vgg_keys=False, torch03=True, seed=0, vocab_size=40, word_dim=16,
                             num_layers=1, text=True, data_name=None):
    """Write a checkpoint in the release layout; returns (backbone or None, fc) for reference.

    The text half (``model[1]``) holds random EncoderText weights for ``vocab_size`` words
    (None of it when ``text`` is False: an image-only checkpoint); read them back with
    :func:`release_text_state_dict`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if precomp:
        backbone, width = None, img_dim
        data_name = data_name or 'f30k_precomp'
    else:
        backbone, width = make_backbone(cnn_type, seed)
        data_name = data_name or 'f30k'
    torch.manual_seed(seed + 1)
    fc = torch.nn.Linear(width, embed_size)
    image_sd = release_image_state_dict(backbone, fc, cnn_type, old_vgg_keys, torch03)
    model = [image_sd, make_text_state_dict(vocab_size, word_dim, embed_size, num_layers, seed)] if text \
        else [image_sd]
    ckpt = {
        'epoch': 14,
        'model': model,
        'best_rsum': 403.2,
        'opt': _release_opt(cnn_type, embed_size, img_dim, data_name, no_imgnorm, use_abs,
                            vocab_size, word_dim, num_layers),
        'Eiters': 33000,
    }
    torch.save(ckpt, str(path), _use_new_zipfile_serialization=not legacy)
    return backbone, fc


def release_text_state_dict(path):
    """The text half of a checkpoint this module wrote (plain torch.load: our own file)."""
    return torch.load(str(path), map_location='cpu', weights_only=False)['model'][1]


def reference_text_embed(text_sd, word_ids, use_abs=False):
    """One caption's embedding from its word ids, computed step by step in float64 with
    the GRU equations written out (no nn.GRU, no padding, no batching)."""
    sd = {k: v.double() for k, v in text_sd.items()}
    x = sd['embed.weight'][torch.as_tensor(word_ids, dtype=torch.int64)]  # (T, word_dim)
    layer = 0
    while 'rnn.weight_ih_l%d' % layer in sd:
        w_ih, w_hh = sd['rnn.weight_ih_l%d' % layer], sd['rnn.weight_hh_l%d' % layer]
        b_ih, b_hh = sd['rnn.bias_ih_l%d' % layer], sd['rnn.bias_hh_l%d' % layer]
        hidden = w_hh.shape[1]
        h = torch.zeros(hidden, dtype=torch.float64)
        outputs = []
        for t in range(x.shape[0]):
            gi = w_ih @ x[t] + b_ih
            gh = w_hh @ h + b_hh
            r = torch.sigmoid(gi[:hidden] + gh[:hidden])
            z = torch.sigmoid(gi[hidden:2 * hidden] + gh[hidden:2 * hidden])
            n = torch.tanh(gi[2 * hidden:] + r * gh[2 * hidden:])
            h = (1 - z) * n + z * h
            outputs.append(h)
        x = torch.stack(outputs)
        layer += 1
    out = x[-1] / x[-1].norm()
    if use_abs:
        out = out.abs()
    return out.numpy()


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


def reference_word_ids(caption, words):
    """A caption's word ids computed without the package: nltk's Treebank word tokenizer
    (word_tokenize without punkt) on the lower-cased caption, ids by position in the
    vocabulary as built (``<pad>``, ``<start>``, ``<end>``, ``<unk>``, then ``words``),
    wrapped in ``<start>`` ... ``<end>``."""
    from nltk.tokenize import word_tokenize
    table = {w: i for i, w in enumerate(['<pad>', '<start>', '<end>', '<unk>'] + list(words))}
    return [1] + [table.get(t, 3) for t in word_tokenize(caption.lower(), preserve_line=True)] + [2]


def reference_text_embeds(text_sd, words, captions, use_abs=False):
    """float64 ``(len(captions), embed_size)``: each caption alone, by
    :func:`reference_word_ids` and :func:`reference_text_embed`."""
    import numpy as np
    return np.stack([reference_text_embed(text_sd, reference_word_ids(c, words), use_abs)
                     for c in captions])
