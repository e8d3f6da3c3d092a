"""A short VSE++ training run on the shapes data set (examples/shapes_dataset.py, precomputed
form, small sizes): the loss falls, validation rsum rises far above the untrained model's,
the files are in the release layout, and an interrupted run resumes where it stopped."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.shapes import generate
from vseimageencoder.training.loop import TrainingError, default_options, train

REPO = Path(__file__).resolve().parents[2]
# One thread: these small models run several times faster so on a busy 2-core machine.
SMALL = dict(embed_size=64, word_dim=32, batch_size=50, lr=2e-3, log_step=5, val_step=10 ** 6, threads=1)


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp('shapes')
    return generate(out, {'train': 400, 'dev': 80, 'test': 80}, size=32, img_dim=128, seed=1)


def _opts(shapes, out, **kw):
    args = dict(SMALL, precomp=str(shapes['precomp']), out=str(out))
    args.update(kw)
    return default_options(**args)


@pytest.fixture(scope='module')
def baseline(shapes, tmp_path_factory):
    """The untrained model (epochs=0: initialised, validated, saved)."""
    return train(_opts(shapes, tmp_path_factory.mktemp('untrained'), epochs=0))


@pytest.fixture(scope='module')
def trained(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp('trained')
    return out, train(_opts(shapes, out, epochs=6))


def test_training_lowers_the_loss_and_lifts_rsum(baseline, trained):
    out, result = trained
    losses = [l for _, l in result['losses']]
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8])
    untrained = baseline['best_rsum']
    assert untrained < 60  # chance level on 80 images is about 30
    assert result['best_rsum'] > untrained + 50, (untrained, result['history'])
    assert len(result['history']) == 6  # one validation per epoch


def test_files_are_in_the_release_layout(trained):
    from vseimageencoder.release.checkpoint import read_checkpoint
    from vseimageencoder.release.vocab import read_vocabulary

    out, result = trained
    best = read_checkpoint(out / 'model_best.pth.tar')  # the package's safe loader
    assert set(best) == {'epoch', 'model', 'best_rsum', 'opt', 'Eiters'}
    opt = best['opt']
    assert type(opt).__name__ == 'Namespace'
    assert opt.data_name == 'precomp' and opt.embed_size == 64 and opt.word_dim == 32 and opt.img_dim == 128
    assert opt.max_violation is True and opt.margin == 0.2 and opt.vocab_size == len(read_vocabulary(result['vocab']))
    assert set(best['model'][0]) == {'fc.weight', 'fc.bias'}
    assert best['model'][0]['fc.weight'].shape == (64, 128)
    assert {'embed.weight', 'rnn.weight_ih_l0', 'rnn.weight_hh_l0'} <= set(best['model'][1])
    assert best['best_rsum'] == pytest.approx(result['best_rsum'])
    last = read_checkpoint(out / 'checkpoint.pth.tar')
    assert last['epoch'] == 6 and last['position'] == {'epoch': 6, 'batch': 0}
    assert last['Eiters'] == result['iterations'] == 6 * 40
    assert Path(result['vocab']) == out / 'precomp_vocab.pkl'


def test_trained_model_loads_in_the_encoders_and_scores_as_validated(trained, shapes):
    from vseimageencoder.encoders import ImageEncoder, TextEncoder
    from vseimageencoder.training.data import precomp_split
    from vseimageencoder.training.evaluation import evaluate_split

    out, result = trained
    img, txt = ImageEncoder(str(out)), TextEncoder(str(out))
    assert img.options.precomputed and img.embed_size == 64
    dev = precomp_split(shapes['precomp'], 'dev')
    res = evaluate_split(dev, img.model, txt.encode_checked)
    assert res['rsum'] == pytest.approx(result['best_rsum'], abs=1e-6)


def test_bf16_autocast_trains_too(shapes, tmp_path):
    result = train(_opts(shapes, tmp_path, epochs=1, precision='bf16', max_iters=6))
    assert result['iterations'] == 6 and all(np.isfinite(l) for _, l in result['losses'])
    from vseimageencoder.release.checkpoint import read_checkpoint
    sd = read_checkpoint(tmp_path / 'checkpoint.pth.tar')['model'][0]
    assert sd['fc.weight'].dtype == torch.float32  # weights stay fp32


def _cli(*args):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    return subprocess.Popen([sys.executable, '-m', 'vseimageencoder', 'train', *args], cwd=str(REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _cli_args(shapes, out, epochs):
    return ['--precomp', str(shapes['precomp']), '--out', str(out), '--epochs', str(epochs),
            '--embed-size', '64', '--word-dim', '32', '--batch-size', '50', '--lr', '2e-3',
            '--log-step', '1', '--threads', '1']


def test_ctrl_c_leaves_a_checkpoint_that_resume_continues_exactly(shapes, tmp_path):
    from vseimageencoder.release.checkpoint import read_checkpoint

    straight = train(_opts(shapes, tmp_path / 'straight', epochs=2))
    p = _cli(*_cli_args(shapes, tmp_path / 'cut', 2))
    lines = []
    for line in p.stdout:  # interrupt after the 3rd iteration's progress line
        lines.append(line)
        if 'iteration 3:' in line:
            p.send_signal(signal.SIGINT)
            break
    rest, _ = p.communicate(timeout=300)
    assert p.returncode == 130, ''.join(lines) + rest
    assert 'resumable checkpoint' in rest and 'Ctrl-C' in rest
    cut = read_checkpoint(tmp_path / 'cut' / 'checkpoint.pth.tar')
    assert 3 <= cut['Eiters'] < 80 and cut['position']['batch'] == cut['Eiters'] % 40
    assert 'optimizer' in cut

    p = _cli(*_cli_args(shapes, tmp_path / 'cut', 2), '--resume', str(tmp_path / 'cut'))
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    assert 'resuming' in out
    a = read_checkpoint(tmp_path / 'straight' / 'checkpoint.pth.tar')
    b = read_checkpoint(tmp_path / 'cut' / 'checkpoint.pth.tar')
    assert a['Eiters'] == b['Eiters'] == 80
    # Same batches in the same order, the optimiser state carried over: the same weights.
    for sa, sb in zip(a['model'], b['model']):
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=1e-4, atol=1e-5)
    assert straight['iterations'] == 80


def test_damaged_or_foreign_checkpoints_are_named(shapes, tmp_path, trained):
    bad = tmp_path / 'bad' / 'checkpoint.pth.tar'
    bad.parent.mkdir()
    good = (trained[0] / 'checkpoint.pth.tar').read_bytes()
    bad.write_bytes(good[:len(good) // 2])  # truncated
    with pytest.raises(TrainingError, match=r'--resume .*checkpoint\.pth\.tar.*not a readable torch checkpoint'):
        train(_opts(shapes, tmp_path / 'o1', epochs=1, resume=str(bad)))
    foreign = tmp_path / 'foreign.pth'
    torch.save({'state_dict': {'w': torch.zeros(2)}}, str(foreign))
    with pytest.raises(TrainingError, match=r'--init-from .*foreign\.pth.*not a VSE\+\+ checkpoint'):
        train(_opts(shapes, tmp_path / 'o2', epochs=1, init_from=str(foreign)))
    with pytest.raises(TrainingError, match='--resume'):
        train(_opts(shapes, tmp_path / 'o3', epochs=1, resume=str(tmp_path / 'nowhere')))
    assert not (tmp_path / 'o1' / 'checkpoint.pth.tar').exists()



def test_a_missing_device_is_one_named_error_and_nothing_written(shapes, tmp_path):
    """train goes through the device check every front end shares: a device the
    machine lacks is a TrainingError naming it, before any file is written."""
    with pytest.raises(TrainingError, match=r"device='cuda:99' is not available.*available here"):
        train(_opts(shapes, tmp_path / 'dev', epochs=1, device='cuda:99'))
    assert not (tmp_path / 'dev').exists()

def test_init_from_keeps_the_vocabulary(shapes, tmp_path, trained):
    from vseimageencoder.release.vocab import read_vocabulary

    out, result = trained
    res = train(_opts(shapes, tmp_path / 'ft', epochs=1, max_iters=3, init_from=str(out),
                      vocab_threshold=1, data_name='mine_precomp'))
    assert dict(read_vocabulary(res['vocab']).word2idx) == dict(read_vocabulary(result['vocab']).word2idx)
    assert Path(res['vocab']).name == 'mine_precomp_vocab.pkl'


def test_backbone_weights_are_walked_before_torch_reads_them(tmp_path):
    """--backbone-weights gets the checkpoints' pre-check: a pickle nested 300,000 deep (which
    crashes the unpickler) is a named TrainingError, and a real state dict still loads."""
    import torchvision

    from vseimageencoder.training.loop import _load_backbone_weights

    deep = tmp_path / 'deep.pth'
    deep.write_bytes(b'\x80\x02}N' + b'\x85' * 300000 + b'K\x01s.')
    backbone = torchvision.models.resnet18()
    backbone.fc = torch.nn.Identity()
    with pytest.raises(TrainingError) as e:
        _load_backbone_weights(backbone, deep)
    assert str(deep) in str(e.value) and 'nest deeper' in str(e.value)

    source = torchvision.models.resnet18()
    good = tmp_path / 'r18.pth'
    torch.save(source.state_dict(), str(good))
    _load_backbone_weights(backbone, good)
    assert torch.equal(backbone.conv1.weight, source.conv1.weight)
