"""The jina 3 Executors serve a model that `train` wrote (resnet18, a few steps on tiny
images): the same embeddings as the core encoders and as the file's tensors computed by hand."""

import numpy as np
import pytest
import torch
from docarray import DocList

from tests.support.shapes import generate
from tests.support.vsepp_release import cut_as_vsepp, reference_embed, reference_text_embeds

pytestmark = pytest.mark.jina3

CAPTIONS = ['a red circle in the top left', 'two shapes : a green one and a red one']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    from vseimageencoder.training.loop import default_options, train

    root = tmp_path_factory.mktemp('trained_j3')
    data = generate(root / 'data', {'train': 12, 'dev': 4, 'test': 0}, size=40, img_dim=16, seed=4)
    out = root / 'model'
    train(default_options(karpathy=str(data['json']), images=str(data['images']), out=str(out),
                          cnn_type='resnet18', finetune=True, crop_size=32, embed_size=32, word_dim=16,
                          batch_size=30, epochs=1, threads=1, readers=1, vocab_threshold=2))
    return out, data


def test_jina3_executors_serve_the_trained_model(trained):
    import torchvision
    from PIL import Image

    from vseimageencoder.jina3 import ImageDoc, TextDoc, VSEImageEncoder, VSETextEncoder
    from vseimageencoder.images.transform import transform
    from vseimageencoder.release.vocab import read_vocabulary

    out, data = trained
    pixels = [np.asarray(Image.open(p).convert('RGB'))
              for p in sorted((data['images'] / 'images').glob('*.png'))[:3]]
    image_docs = VSEImageEncoder(model_path=str(out), batch_size=2).encode(
        docs=DocList[ImageDoc]([ImageDoc(tensor=p) for p in pixels]), parameters={})
    text_docs = VSETextEncoder(model_path=str(out), batch_size=2).encode(
        docs=DocList[TextDoc]([TextDoc(text=c) for c in CAPTIONS]), parameters={})

    ckpt = torch.load(str(out / 'model_best.pth.tar'), map_location='cpu', weights_only=False)
    img_sd, txt_sd = ckpt['model']
    net = torchvision.models.resnet18(weights=None)
    cut_as_vsepp(net, 'resnet18')
    net.load_state_dict({k[len('cnn.module.'):]: v for k, v in img_sd.items() if k.startswith('cnn.module.')})
    fc = torch.nn.Linear(512, 32)
    fc.load_state_dict({'weight': img_sd['fc.weight'], 'bias': img_sd['fc.bias']})
    expected = reference_embed(net.eval(), fc, np.stack([transform(p) for p in pixels]))
    np.testing.assert_allclose(np.stack([d.embedding for d in image_docs]), expected, atol=2e-5)
    w2i = read_vocabulary(out / 'shapes_vocab.pkl').word2idx
    words = [w for w, _ in sorted(w2i.items(), key=lambda kv: kv[1])][4:]
    np.testing.assert_allclose(np.stack([d.embedding for d in text_docs]),
                               reference_text_embeds(txt_sd, words, CAPTIONS), atol=2e-6)
