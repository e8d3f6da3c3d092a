"""A model trained here on image files (`vseimageencoder train --karpathy ... --cnn-type resnet18
--finetune`, a few steps on tiny images) is loaded by everything that loads a released one:
ImageEncoder, TextEncoder, the jina 0.9 image and text executors in a real Flow, and
`evaluate`. Expected embeddings are computed independently from the file's tensors
(tests.support.vsepp_release: a torchvision ResNet filled by hand, the GRU step by step)."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.fresh_process import run_in_fresh_process
from tests.support.shapes import generate
from tests.support.vsepp_release import cut_as_vsepp, reference_embed, reference_text_embeds

REPO = Path(__file__).resolve().parent.parent.parent
EMBED = 32
CAPTIONS = ['a red circle in the top left', 'a small blue square', 'two shapes : a green one and a red one']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    from vseimageencoder.training.loop import default_options, train

    root = tmp_path_factory.mktemp('trained_images')
    data = generate(root / 'data', {'train': 16, 'dev': 6, 'test': 10}, size=40, img_dim=16, seed=3)
    out = root / 'pretrained'
    result = train(default_options(
        karpathy=str(data['json']), images=str(data['images']), out=str(out), cnn_type='resnet18',
        finetune=True, crop_size=32, embed_size=EMBED, word_dim=16, batch_size=20, epochs=1,
        lr=1e-3, threads=1, readers=1, precision='bf16', vocab_threshold=2))
    return out, data, result


def _reference_towers(ckpt_path):
    """A torchvision resnet18 and fc filled from the file's tensors with plain torch."""
    import torchvision
    ckpt = torch.load(str(ckpt_path), map_location='cpu', weights_only=False)
    img_sd, txt_sd = ckpt['model']
    net = torchvision.models.resnet18(weights=None)
    cut_as_vsepp(net, 'resnet18')
    net.load_state_dict({k[len('cnn.module.'):]: v for k, v in img_sd.items() if k.startswith('cnn.module.')})
    fc = torch.nn.Linear(512, EMBED)
    fc.load_state_dict({'weight': img_sd['fc.weight'], 'bias': img_sd['fc.bias']})
    return net.eval(), fc, txt_sd, ckpt


def _words(vocab_file):
    from vseimageencoder.release.vocab import read_vocabulary
    w2i = read_vocabulary(vocab_file).word2idx
    return [w for w, _ in sorted(w2i.items(), key=lambda kv: kv[1])][4:]


def _images(data, n=5):
    from vseimageencoder.images.transform import transform
    paths = sorted((data['images'] / 'images').glob('*.png'))[:n]
    return np.stack([transform(p, resize='exact') for p in paths])


def test_release_layout_and_the_encoders(trained):
    from vseimageencoder.encoders import ImageEncoder, TextEncoder

    out, data, result = trained
    best = out / 'model_best.pth.tar'
    net, fc, txt_sd, ckpt = _reference_towers(best)
    assert set(ckpt) == {'epoch', 'model', 'best_rsum', 'opt', 'Eiters'}
    keys = list(ckpt['model'][0])
    # The DataParallel prefix the released ResNet models carry.
    assert all(k.startswith('cnn.module.') for k in keys if k.startswith('cnn')) and 'fc.weight' in keys
    assert ckpt['opt'].cnn_type == 'resnet18' and ckpt['opt'].finetune is True and ckpt['opt'].data_name == 'shapes'
    assert ckpt['Eiters'] == 4 and ckpt['epoch'] == 1

    x = _images(data)
    img = ImageEncoder(str(out))
    np.testing.assert_allclose(img.encode(x), reference_embed(net, fc, x), atol=2e-5)
    txt = TextEncoder(str(out))
    assert txt.vocab_path == out / 'shapes_vocab.pkl'
    expected = reference_text_embeds(txt_sd, _words(txt.vocab_path), CAPTIONS)
    np.testing.assert_allclose(txt.encode(CAPTIONS), expected, atol=2e-6)


def _pods(config_yaml, text_yaml, workdir, blobs, captions):
    """Runs in a fresh process: the repository's image and text pod YAMLs in Flows."""
    os.chdir(workdir)
    from jina import Document
    from jina.flow import Flow

    got = {}

    def on_done(resp):
        for d in resp.docs:
            got[d.id if d.text == '' else d.text] = d.embedding.copy()

    with Flow().add(uses=str(config_yaml)) as f:
        f.index([Document(id='%016x' % (0xabc + i), blob=b) for i, b in enumerate(blobs)],
                on_done=on_done, request_size=2)
    with Flow().add(uses=str(text_yaml)) as f:
        f.index([Document(text=c) for c in captions], on_done=on_done, request_size=2)
    return got


@pytest.mark.jina09
def test_jina09_pods_serve_the_trained_model(trained, tmp_path):
    out, data, _ = trained
    os.symlink(str(out), str(tmp_path / 'pretrained'))  # config.yml / text.yml: model_path pretrained
    x = _images(data, 4).astype(np.float32)
    got = run_in_fresh_process(_pods, REPO / 'config.yml', REPO / 'text.yml', tmp_path, x, CAPTIONS,
                               timeout=300)
    net, fc, txt_sd, _ = _reference_towers(out / 'model_best.pth.tar')
    expected = reference_embed(net, fc, x)
    for i in range(4):
        np.testing.assert_allclose(got['%016x' % (0xabc + i)], expected[i], atol=2e-5)
    expected_text = reference_text_embeds(txt_sd, _words(out / 'shapes_vocab.pkl'), CAPTIONS)
    for c, e in zip(CAPTIONS, expected_text):
        np.testing.assert_allclose(got[c], e, atol=2e-6)


def test_evaluate_command_on_the_image_files(trained, tmp_path):
    from vseimageencoder.cli import main

    out, data, _ = trained
    js = tmp_path / 'r.json'
    assert main(['evaluate', '--karpathy', str(data['json']), '--images', str(data['images']),
                 '--model-path', str(out), '--batch-size', '4', '--resize', 'exact', '-o', str(js),
                 '--no-progress']) == 0
    doc = json.loads(js.read_text())
    assert (doc['images'], doc['captions']) == (10, 50)
    assert 0 <= doc['rsum'] <= 600 and doc['i2t']['medr'] >= 1
