"""``vseimageencoder evaluate`` end to end on a precomputed-feature model written by ``train``,
and bad data named (missing images, wrong caption counts, empty splits, wrong kind)."""
import json

import numpy as np
import pytest

from tests.support.shapes import generate
from vseimageencoder.cli import main


@pytest.fixture(scope='module')
def model_and_data(tmp_path_factory):
    from vseimageencoder.training.loop import default_options, train

    root = tmp_path_factory.mktemp('evalcli')
    data = generate(root / 'data', {'train': 100, 'dev': 20, 'test': 25}, size=24, img_dim=64, seed=2)
    out = root / 'model'
    train(default_options(precomp=str(data['precomp']), out=str(out), epochs=1, embed_size=32,
                          word_dim=16, batch_size=50, lr=2e-3, threads=1))
    return out, data


def test_table_json_and_ranks(model_and_data, tmp_path, capsys):
    from vseimageencoder.encoders import ImageEncoder, TextEncoder
    from vseimageencoder.training.data import precomp_split
    from vseimageencoder.training.metrics import i2t_ranks, t2i_ranks
    from vseimageencoder.release.weights import sha256_of

    out, data = model_and_data
    js, npz = tmp_path / 'r.json', tmp_path / 'r.npz'
    assert main(['evaluate', '--precomp', str(data['precomp']), '--model-path', str(out),
                 '-o', str(js), '--ranks', str(npz), '--no-progress']) == 0
    table = capsys.readouterr().out
    assert 'image->text' in table and 'text->image' in table and 'rsum' in table
    doc = json.loads(js.read_text())
    assert set(doc['i2t']) == set(doc['t2i']) == {'r1', 'r5', 'r10', 'medr', 'meanr'}
    assert (doc['images'], doc['captions'], doc['folds']) == (25, 125, 1)
    assert doc['model'] == sha256_of(out / 'model_best.pth.tar')
    # The figures are those of the encoders' embeddings ranked by the protocol.
    split = precomp_split(data['precomp'], 'test')
    im = ImageEncoder(str(out)).encode(np.array(split.features))
    cap = TextEncoder(str(out)).encode(split.captions)
    ranks = np.load(str(npz))
    np.testing.assert_array_equal(ranks['i2t'], i2t_ranks(im, cap))
    np.testing.assert_array_equal(ranks['t2i'], t2i_ranks(im, cap))
    assert doc['i2t']['r10'] == pytest.approx(100.0 * np.mean(ranks['i2t'] < 10))
    assert doc['rsum'] == pytest.approx(sum(doc[s]['r%d' % k] for s in ('i2t', 't2i') for k in (1, 5, 10)))
    assert str(round(doc['rsum'], 2)) in table or '%.2f' % doc['rsum'] in table

    assert main(['evaluate', '--precomp', str(data['precomp']), '--model-path', str(out),
                 '-o', str(js), '--fold5', '--no-progress']) == 0
    doc5 = json.loads(js.read_text())
    assert doc5['folds'] == 5 and doc5['i2t']['meanr'] < doc['i2t']['meanr']


def _json(tmp_path, images):
    p = tmp_path / 'd.json'
    p.write_text(json.dumps({'images': images}))
    return p


def _entry(name, n_caps=5, split='test'):
    return {'filename': name, 'filepath': 'imgs', 'split': split,
            'sentences': [{'raw': 'caption %d of %s' % (k, name)} for k in range(n_caps)]}


@pytest.fixture
def run_cli(caplog):
    def run(*argv):
        caplog.clear()
        status = main(['evaluate', *argv, '--no-progress'])
        return status, caplog.text
    return run


def test_missing_images_are_named_before_the_model_loads(tmp_path, run_cli):
    (tmp_path / 'imgs').mkdir()
    from PIL import Image
    Image.new('RGB', (8, 8)).save(str(tmp_path / 'imgs' / 'a.png'))
    js = _json(tmp_path, [_entry('a.png'), _entry('gone.png')])
    status, err = run_cli('--karpathy', str(js), '--images', str(tmp_path),
                       '--model-path', str(tmp_path / 'no-model-needed'))
    assert status == 2
    assert '1 of the 2 images' in err and 'gone.png' in err and "'test'" in err


def test_too_few_captions_and_empty_splits_are_named(tmp_path, run_cli):
    js = _json(tmp_path, [_entry('a.png'), _entry('b.png', n_caps=4)])
    status, err = run_cli('--karpathy', str(js), '--images', str(tmp_path))
    assert status == 2 and 'imgs/b.png' in err and 'has 4 captions' in err and str(js) in err
    status, err = run_cli('--karpathy', str(js), '--images', str(tmp_path), '--split', 'val')
    assert status == 2 and "no images in split 'val'" in err and 'splits present: test' in err
    (tmp_path / 'broken.json').write_text('{"images": [')
    status, err = run_cli('--karpathy', str(tmp_path / 'broken.json'), '--images', str(tmp_path))
    assert status == 2 and 'broken.json' in err


def test_precomputed_counts_and_kinds_are_named(tmp_path, run_cli, model_and_data):
    d = tmp_path / 'pre'
    d.mkdir()
    np.save(str(d / 'test_ims.npy'), np.zeros((3, 64), np.float32))
    (d / 'test_caps.txt').write_text('a\n' * 14)
    status, err = run_cli('--precomp', str(d))
    assert status == 2 and 'test_caps.txt has 14 lines for the 3 feature rows' in err
    status, err = run_cli('--precomp', str(d), '--split', 'dev')
    assert status == 2 and 'dev_ims.npy does not exist' in err and 'test_ims.npy' in err
    (d / 'test_caps.txt').write_text('')
    np.save(str(d / 'test_ims.npy'), np.zeros((0, 64), np.float32))
    status, err = run_cli('--precomp', str(d))
    assert status == 2 and 'is empty' in err
    # Features of the wrong width for the model.
    np.save(str(d / 'test_ims.npy'), np.zeros((2, 10), np.float32))
    (d / 'test_caps.txt').write_text('a red circle\n' * 10)
    status, err = run_cli('--precomp', str(d), '--model-path', str(model_and_data[0]))
    assert status == 2 and '10-d features' in err and 'expects 64-d' in err


@pytest.mark.parametrize('readers', [None, 0, 2])
def test_images_encoded_in_order_and_an_unreadable_one_named(tmp_path, readers):
    from PIL import Image
    from vseimageencoder.images.transform import transform
    from vseimageencoder.training.data import DataError
    from vseimageencoder.training.evaluation import encode_image_files

    def tower(x):  # a real (tiny) torch model: channel means, then L2-normalised
        import torch
        return torch.nn.functional.normalize(x.mean(dim=(2, 3)), dim=1)

    rng = np.random.RandomState(4)
    paths = []
    for i in range(5):
        p = tmp_path / ('%d.png' % i)
        Image.fromarray((rng.rand(30 + i, 40, 3) * 255).astype(np.uint8)).save(str(p))
        paths.append(p)
    got = encode_image_files(tower, paths, batch_size=2, readers=readers)
    want = np.stack([transform(str(p)).mean(axis=(1, 2)) for p in paths])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-5)

    (tmp_path / '3.png').write_bytes(b'\x89PNG\r\n\x1a\n not really')
    with pytest.raises(DataError, match=r'image .*3\.png cannot be evaluated'):
        encode_image_files(tower, paths, batch_size=2, readers=readers)
