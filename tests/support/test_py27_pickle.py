"""The Python 2.7 file writers of tests/support/py27_pickle.py: what they write, opcode by opcode,
and that the package's safe loader reads their checkpoints as it must read the releases."""
import argparse
import io
import pickle
import pickletools
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support import py27_pickle as p27
from tests.support.vsepp_release import reference_embed
from vseimageencoder.release import checkpoint as ck


def ops_of(data: bytes):
    return [(op.name, arg) for op, arg, _pos in pickletools.genops(data)]


def pickles_of(path: Path):
    """The consecutive pickles at the head of a legacy file, and the offset after them."""
    data = Path(path).read_bytes()
    f = io.BytesIO(data)
    out = []
    for _ in range(5):  # magic, protocol version, sys_info, main pickle, storage keys
        start = f.tell()
        for _op in pickletools.genops(f):
            pass
        out.append(data[start:f.tell()])
    return out, f.tell(), data


@pytest.fixture(scope='module')
def resnet_release(tmp_path_factory):
    path = tmp_path_factory.mktemp('py27') / 'model_best.pth.tar'
    return p27.write_py27_release_checkpoint(path, 'resnet18', embed_size=32, num_layers=2, seed=4)


# ----------------------------------------------------------------------- loads, with parity

@pytest.mark.parametrize('cnn_type', ['resnet18', 'vgg11'])
def test_py27_checkpoint_loads_through_load_tower_with_parity(tmp_path, cnn_type):
    rel = p27.write_py27_release_checkpoint(tmp_path / 'model_best.pth.tar', cnn_type,
                                            embed_size=24, old_vgg_keys=True, seed=9)
    tower, opts = ck.load_tower(rel.path)
    assert opts.cnn_type == cnn_type and opts.embed_size == 24 and opts.data_name == 'f30k'
    x = np.random.RandomState(3).randn(2, 3, 64, 72).astype(np.float32)
    with torch.no_grad():
        got = tower(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, reference_embed(rel.backbone, rel.fc, x), atol=2e-5)


def test_py27_checkpoint_text_half_and_options_read_back(resnet_release):
    rel = resnet_release
    obj = ck.read_checkpoint(rel.path)
    assert set(obj) == {'epoch', 'model', 'best_rsum', 'opt', 'Eiters'}  # byte keys became str
    assert obj['epoch'] == 14 and obj['Eiters'] == 33000 and obj['best_rsum'] == 403.2
    opt = vars(obj['opt'])
    assert opt == rel.opt_fields and all(isinstance(k, str) for k in opt)
    assert opt['data_name'] == 'f30k' and opt['num_layers'] == 2 and opt['vocab_size'] == 44
    text = obj['model'][1]
    assert list(text) == ['embed.weight'] + ['rnn.' + k for k in rel.rnn.state_dict()]
    assert torch.equal(text['embed.weight'], rel.embed.weight)
    for k, v in rel.rnn.state_dict().items():
        assert torch.equal(text['rnn.' + k], v), k
    # cuDNN's flat buffer: every GRU tensor is a view into one storage, at its own offset.
    rnn = [v for k, v in text.items() if k.startswith('rnn.')]
    assert len({v.untyped_storage().data_ptr() for v in rnn}) == 1
    assert [v.storage_offset() for v in rnn][:2] == [0, rnn[0].numel()]
    assert rnn[0].untyped_storage().nbytes() > sum(v.numel() for v in rnn) * 4  # slack at the end


# ----------------------------------------------------------------------- what is in the file

def test_py27_checkpoint_header_pickles_are_torch_legacy(resnet_release):
    (magic, version, sys_info, _main, keys), end, data = pickles_of(resnet_release.path)
    assert ops_of(magic) == [('PROTO', 2), ('LONG1', p27.MAGIC_NUMBER), ('STOP', None)]
    assert ops_of(version) == [('PROTO', 2), ('BININT2', 1001), ('STOP', None)]
    assert pickle.loads(sys_info, encoding='bytes') == {
        b'protocol_version': 1001, b'little_endian': True,
        b'type_sizes': {b'short': 2, b'int': 4, b'long': 8}}
    key_list = pickle.loads(keys, encoding='bytes')
    assert all(isinstance(k, bytes) and k.isdigit() for k in key_list) and key_list == sorted(key_list)
    # Then the storages, in key order: int64 element count, little-endian data.
    count, = struct.unpack('<q', data[end:end + 8])
    assert count > 0 and end + 8 + 4 * count <= len(data)


def test_py27_checkpoint_main_pickle_opcodes(resnet_release):
    main = p27.main_pickle_bytes(resnet_release.path)
    ops = ops_of(main)
    names = Counter(name for name, _ in ops)
    assert ops[0] == ('PROTO', 2) and ops[-1] == ('STOP', None)
    assert names['BINUNICODE'] == 0  # Python 2 str everywhere: keys, option names and values
    assert names['SHORT_BINSTRING'] > 100
    strings = [arg for name, arg in ops if name == 'SHORT_BINSTRING']
    assert {'epoch', 'model', 'best_rsum', 'opt', 'Eiters', 'data_name', 'cnn_type'} <= set(strings)
    assert 'cnn.module.conv1.weight' in strings and 'rnn.weight_hh_l1' in strings
    assert 'cuda:0' in strings and 'resnet18' in strings and 'f30k' in strings
    globals_ = {arg for name, arg in ops if name == 'GLOBAL'}
    assert globals_ == {'argparse Namespace', 'collections OrderedDict',
                        'torch._utils _rebuild_tensor', 'torch.cuda FloatStorage'}
    n_tensors = sum(len(sd) for sd in ck.read_checkpoint(resnet_release.path)['model'])
    assert names['BINPERSID'] == n_tensors
    assert names['NEWOBJ'] == 1 and names['BUILD'] == 1  # the Namespace only
    assert names['REDUCE'] == n_tensors + 2  # each tensor, and the two OrderedDicts
    assert 'BINGET' in names  # 'storage' and the globals, memoised as Python 2 did


def test_py27_checkpoint_storages_recorded_on_cuda0(resnet_release, monkeypatch):
    # The storages really are recorded on cuda:0: restoring them anywhere else needs the
    # map_location the package passes.
    seen = []

    def where(storage, location):
        seen.append(location)
        return storage
    with torch.serialization.safe_globals([argparse.Namespace]):
        torch.load(str(resnet_release.path), map_location=where, weights_only=True)
    assert set(seen) == {'cuda:0'}


def test_python2_dict_order_and_hash():
    assert p27.py2_hash(b'a') == 12416037344 and p27.py2_hash(b'abc') == 1453079729188098211
    assert p27.py2_hash('abc') == p27.py2_hash(b'abc') and p27.py2_hash(b'') == 0
    assert p27.py2_dict_order([b'a', b'b', b'c']) == [b'a', b'c', b'b']  # {'a':1,'c':3,'b':2}
    assert p27.py2_dict_order(list(range(30))) == list(range(30))


def test_long1_matches_python3_pickle():
    for v in (p27.MAGIC_NUMBER, 2 ** 64, -2 ** 70, 1 << 200):
        assert p27.Py2Pickler().dump(p27.Py2Long(v)) == pickle.dumps(v, 2)


# ----------------------------------------------------------------------- vocabularies

class _Vocabulary:
    pass


class _OnlyVocabulary(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ('__main__', 'Vocabulary') or (module, name) == ('vocab', 'Vocabulary'):
            return _Vocabulary
        raise pickle.UnpicklingError('refused %s.%s' % (module, name))


def test_py27_vocab_opcodes(tmp_path):
    words = p27.vocab_words(40)
    path = p27.write_py27_vocab(tmp_path / 'f30k_vocab.pkl', words)
    ops = ops_of(path.read_bytes())
    names = [name for name, _ in ops]
    assert ops[:4] == [('PROTO', 2), ('GLOBAL', '__main__ Vocabulary'), ('BINPUT', 0),
                       ('EMPTY_TUPLE', None)]
    assert names[4:6] == ['NEWOBJ', 'BINPUT'] and names[-2:] == ['BUILD', 'STOP']
    assert names.count('GLOBAL') == 1 and 'REDUCE' not in names
    byte_strings = {arg for name, arg in ops if name == 'SHORT_BINSTRING'}
    assert byte_strings == {'word2idx', 'idx2word', 'idx', '<pad>', '<start>', '<end>', '<unk>'}
    unicode_strings = [arg for name, arg in ops if name == 'BINUNICODE']
    # Each word written once (word2idx); idx2word refers back to it through the memo.
    assert sorted(unicode_strings) == sorted(words) and 'caf\u00e9' in unicode_strings
    assert names.count('BINGET') + names.count('LONG_BINGET') == len(words) + 4


def test_py27_vocab_content(tmp_path):
    words = p27.vocab_words(40)
    path = p27.write_py27_vocab(tmp_path / 'f30k_vocab.pkl', words)
    with open(path, 'rb') as f:
        v = _OnlyVocabulary(f, encoding='bytes').load()
    assert isinstance(v, _Vocabulary)
    state = v.__dict__
    assert set(state) == {b'word2idx', b'idx2word', b'idx'} and state[b'idx'] == 44
    w2i, i2w = state[b'word2idx'], state[b'idx2word']
    assert [w2i[t] for t in (b'<pad>', b'<start>', b'<end>', b'<unk>')] == [0, 1, 2, 3]
    assert [w2i[w] for w in words] == list(range(4, 44))
    assert i2w == {i: w for w, i in w2i.items()}
    assert all(i2w[w2i[w]] is w for w in w2i)  # one object per word, as Python 2 held it
    # The dict order is Python 2's hash order, not insertion order.
    assert list(w2i) == p27.py2_dict_order(list(p27.SPECIAL_TOKENS) + words) != list(p27.SPECIAL_TOKENS) + words


def test_py27_vocab_large_uses_long_memo_and_module_spelling(tmp_path):
    words = p27.vocab_words(3000)
    path = p27.write_py27_vocab(tmp_path / 'coco_vocab.pkl', words, module='vocab')
    ops = ops_of(path.read_bytes())
    names = Counter(name for name, _ in ops)
    assert ('GLOBAL', 'vocab Vocabulary') in ops
    assert names['LONG_BINPUT'] > 0 and names['LONG_BINGET'] > 0
    assert names['SETITEMS'] >= 6  # batches of 1000 per dict
    with open(path, 'rb') as f:
        v = _OnlyVocabulary(f, encoding='bytes').load()
    assert v.__dict__[b'idx'] == 3004 and v.__dict__[b'idx2word'][3003] == words[-1]


@pytest.mark.parametrize('kind', ['top', 'nested', 'posix'])
def test_hostile_vocab_names_code(tmp_path, kind):
    marker = tmp_path / 'ran'
    path = p27.write_hostile_py27_vocab(tmp_path / 'f30k_vocab.pkl', marker, kind)
    ops = ops_of(path.read_bytes())  # inspected, never unpickled
    assert ('GLOBAL', 'posix system' if kind == 'posix' else 'os system') in ops
    assert ('SHORT_BINSTRING', 'touch %s' % marker) in ops and ('REDUCE', None) in ops
    with open(path, 'rb') as f, pytest.raises(pickle.UnpicklingError, match='refused'):
        _OnlyVocabulary(f, encoding='bytes').load()
    assert not marker.exists()
