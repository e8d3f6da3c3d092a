"""Hostile checkpoints and vocabularies: pickles nested deep enough
to crash the process, sizes that would allocate far more than the file holds. Each is
loaded in a child process (tests/support/processes-style subprocess), so a regression shows as a
crash or a memory figure there, never takes the test run down."""
import argparse
import io
import pickle
import subprocess
import sys
import textwrap
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from tests.support.py27_pickle import vocab_words, write_py27_vocab
from vseimageencoder.release import checkpoint as ck
from vseimageencoder.release import pickle_scan as sp
from vseimageencoder.release import vocab as vc

DEEP_TUPLE_KEY = b'\x80\x02}N' + b'\x85' * 300000 + b'K\x01s.'  # {((((None,),),...): 1}
LEGACY_HEAD = (pickle.dumps(0x1950a86a20f9469cfc6c, 2) + pickle.dumps(1001, 2)
               + pickle.dumps({'protocol_version': 1001, 'little_endian': True,
                               'type_sizes': {'short': 2, 'int': 4, 'long': 8}}, 2))


def deep_list(n: int) -> bytes:
    """A pickle of a list nested ``n`` deep, as opcodes (Python's pickler itself would
    recurse): MARK x n, EMPTY_LIST, LIST x n."""
    return b'\x80\x02' + b'(' * n + b']' + b'l' * n + b'.'


def legacy_file(path: Path, main: bytes, keys: bytes = pickle.dumps([], 2), data: bytes = b'') -> Path:
    path.write_bytes(LEGACY_HEAD + main + keys + data)
    return path


def zip_file(path: Path, main: bytes, records=None) -> Path:
    with zipfile.ZipFile(str(path), 'w') as z:
        z.writestr('archive/data.pkl', main)
        z.writestr('archive/byteorder', 'little')
        for name, data in (records or {}).items():
            z.writestr('archive/' + name, data)
        z.writestr('archive/version', '3\n')
    return path


def load_in_child(path: Path, call: str = 'vseimageencoder.release.checkpoint.load_tower', limit_mb: int = 0):
    """Run ``call(path)`` in a child Python; returns (returncode, 'ErrorClass: message' or
    'ok', peak RSS in MB). ``limit_mb`` caps the child's address space."""
    module, func = call.rsplit('.', 1)
    code = textwrap.dedent('''
        import importlib, resource, sys
        def peak_mb():  # this process's own peak (ru_maxrss would include the parent's at fork)
            for line in open('/proc/self/status'):
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) // 1024
        path, limit, module, func = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit << 20, limit << 20))
        m = importlib.import_module(module)
        try:
            getattr(m, func)(path)
            out = 'ok'
        except Exception as e:
            out = type(e).__name__ + ': ' + str(e)
        rss = peak_mb()
        sys.stdout.write(out.replace('\\n', ' ') + '\\n' + str(rss) + '\\n')
    ''')
    r = subprocess.run([sys.executable, '-c', code, str(path), str(limit_mb), module, func],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=120)
    lines = r.stdout.strip().splitlines()
    return r.returncode, (lines[0] if lines else r.stderr[-500:]), int(lines[1]) if len(lines) > 1 else -1


def load_all_in_child(paths):
    """``checkpoint.load_tower`` on each of ``paths`` in ONE child Python (importing torch
    costs seconds): returns ({path: 'ErrorClass: message' or 'ok'}, the child's peak RSS in
    MB, its return code). A crash on one file leaves the later ones without a result."""
    code = textwrap.dedent('''
        import sys
        from vseimageencoder.release import checkpoint
        for path in sys.argv[1:]:
            try:
                checkpoint.load_tower(path)
                out = 'ok'
            except Exception as e:
                out = type(e).__name__ + ': ' + str(e)
            sys.stdout.write(path + '\\t' + out.replace('\\n', ' ') + '\\n')
            sys.stdout.flush()
        for line in open('/proc/self/status'):
            if line.startswith('VmHWM:'):
                sys.stdout.write('peak\\t%d\\n' % (int(line.split()[1]) // 1024))
    ''')
    r = subprocess.run([sys.executable, '-c', code, *map(str, paths)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    results = dict(line.split('\t', 1) for line in r.stdout.splitlines() if '\t' in line)
    peak = int(results.pop('peak', -1))
    return results, peak, r.returncode, r.stderr[-1000:]


# ----------------------------------------------------------------------- the scanner itself

def test_scanner_refuses_deep_nesting_without_recursing():
    with pytest.raises(sp.PickleTooDeepError, match='deeper than 64'):
        sp.scan_pickle(DEEP_TUPLE_KEY)
    with pytest.raises(sp.PickleTooDeepError):
        sp.scan_pickle(deep_list(100_000))
    assert sp.scan_pickle(deep_list(60)).depth == 61


def test_scanner_sees_depth_added_through_the_memo():
    # outer = [inner]; then inner (fetched back from the memo) gets a 63-deep list appended:
    # inner is 64 deep (allowed), outer 65 (refused) only if its depth follows.
    body = deep_list(62)[2:-1]
    data = b'\x80\x02]q\x00]q\x01a' + b'h\x01' + body + b'a' + b'0' + b'.'
    with pytest.raises(sp.PickleTooDeepError):
        sp.scan_pickle(data)
    assert sp.scan_pickle(b'\x80\x02]q\x01' + body + b'a.').depth == 64


def test_scanner_refuses_a_self_containing_list():
    a = []
    a.append(a)
    with pytest.raises(sp.PickleTooDeepError, match='contain themselves'):
        sp.scan_pickle(pickle.dumps(a))


@pytest.mark.parametrize('data, error', [
    (b'\x80\x02X\xff\xff\xff\xffab.', sp.MalformedPickleError),   # 4 GB unicode claimed
    (b'\x80\x02\x8e' + b'\xff' * 8 + b'.', sp.MalformedPickleError),  # BINBYTES8 past the end
    (b'\x80\x02](K\x01', sp.MalformedPickleError),                   # no STOP
    (b'\x80\x02\xfe.', sp.MalformedPickleError),                     # unknown opcode
    (b'\x80\x02h\x05.', sp.MalformedPickleError),                    # memo read before written
], ids=['huge-unicode', 'huge-bytes8', 'truncated', 'bad-opcode', 'bad-memo'])
def test_scanner_refuses_malformed(data, error):
    with pytest.raises(error):
        sp.scan_pickle(data)


def test_scanner_op_limit_and_plain_data():
    data = pickle.dumps(list(range(10_000)), 2)
    with pytest.raises(sp.PickleTooLargeError, match='more than 1000 opcodes'):
        sp.scan_pickle(data, max_ops=1000)
    scan = sp.scan_pickle(pickle.dumps({'a': (1, [2.0, 'x']), 'b': OrderedDict(c=3)}, 4))
    assert scan.depth == 3 and scan.globals == ['collections.OrderedDict']


# ----------------------------------------------------------------------- checkpoints: nesting

def test_deep_tuple_key_in_legacy_checkpoint_is_refused_not_a_crash(crash_cases):
    out = crash_cases.result('legacy_deep')  # unguarded: exit -11 (SIGSEGV)
    assert out.startswith('UnsafeCheckpointError') and 'deeper than' in out, out
    assert str(crash_cases.paths['legacy_deep']) in out

def test_deep_tuple_key_in_zip_checkpoint_is_refused_not_a_crash(crash_cases):
    out = crash_cases.result('zip_deep')
    assert out.startswith('UnsafeCheckpointError') and 'deeper than' in out, out

def test_deep_list_in_opt_is_refused(tmp_path):
    # {'model': [{}], 'opt': [[[[...]]]]} (5,000 deep)
    main = b'\x80\x02}(X\x05\x00\x00\x00model](}eX\x03\x00\x00\x00opt' + deep_list(5000)[2:-1] + b'u.'
    path = legacy_file(tmp_path / 'm.pth', main)
    with pytest.raises(ck.UnsafeCheckpointError, match='deeper than'):
        ck.load_tower(path)


# ----------------------------------------------------------------------- checkpoints: sizes

def _precomp_ckpt(path, fc_weight, embed_size, img_dim=512, legacy=True):
    torch.save({'epoch': 1, 'model': [{'fc.weight': fc_weight, 'fc.bias': torch.zeros(1).expand(embed_size)}],
                'opt': argparse.Namespace(data_name='f30k_precomp', embed_size=embed_size, img_dim=img_dim)},
               str(path), _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize('legacy', [True, False], ids=['legacy', 'zip'])
def test_stride0_weight_claiming_more_than_its_storage_is_refused(tmp_path, legacy):
    # 4,096 x 512 claimed, 512 floats stored: the file is tiny, the model would not be.
    path = _precomp_ckpt(tmp_path / 'm.pth', torch.zeros(512).expand(4096, 512), 4096, legacy=legacy)
    with pytest.raises(ck.CheckpointLimitError, match=r'fc\.(weight|bias) of shape .* claims'):
        ck.load_tower(path)


def test_embed_size_beyond_any_model_is_named_not_an_allocator_error(crash_cases):
    # Unguarded: a raw allocator RuntimeError from building a Linear(512, 10^9).
    out = crash_cases.result('embed_1e9')
    assert out.startswith('CheckpointLimitError'), out

@pytest.mark.parametrize('key, value', [('embed_size', 10 ** 9), ('img_dim', 10 ** 6)])
def test_option_bounds(key, value):
    opts = dict(data_name='f30k_precomp', embed_size=1024, img_dim=4096)
    opts[key] = value
    with pytest.raises(ck.CheckpointLimitError, match='%s=%d is beyond any VSE\\+\\+ model' % (key, value)):
        ck.read_options({'model': [{}], 'opt': argparse.Namespace(**opts)}, 'm.pth')


def test_text_bounds_from_the_tensors():
    sd = {'embed.weight': torch.zeros(1).expand(300_000, 300), 'rnn.weight_ih_l0': torch.zeros(3),
          'rnn.weight_hh_l0': torch.zeros(3072, 1024)}
    with pytest.raises(ck.CheckpointLimitError, match='vocab_size=300000'):
        ck.read_text_options({'model': [{}, sd], 'opt': argparse.Namespace()}, sd, 'm.pth')


class _Storage:
    """Pickled by persistent id, as torch's legacy writer pickles a storage."""

    def __init__(self, numel):
        self.numel = numel


class _Tensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (self.storage, 0, self.shape, (1,) * len(self.shape), False, OrderedDict()))


def _torch_style_pickle(obj) -> bytes:
    f = io.BytesIO()
    p = pickle.Pickler(f, protocol=2)
    p.persistent_id = lambda o: (('storage', torch.FloatStorage, '0', 'cpu', o.numel, None)
                                 if isinstance(o, _Storage) else None)
    p.dump(obj)
    return f.getvalue()


def test_storage_declaring_more_than_the_file_holds_is_refused(crash_cases):
    # One storage of 10^9 floats (4 GB) declared in a file of a few hundred bytes.
    out = crash_cases.result('storage_4gb')
    assert out.startswith('CheckpointTooShortError') and 'declare 4000000008 bytes' in out, out

def test_compressed_zip_record_is_not_inflated(crash_cases):
    # A zip checkpoint whose storage record is 256 MiB of zeros deflated to a few hundred KB.
    assert crash_cases.paths['deflated'].stat().st_size < 2 << 20
    out = crash_cases.result('deflated')
    assert out.startswith('CheckpointLimitError') and 'archive/data/0 is compressed' in out, out
    # One child loaded every case above: none of them took memory worth the name.
    assert crash_cases.peak_mb < 1000, crash_cases.peak_mb

# ----------------------------------------------------------------------- vocabularies

def test_deep_tuple_in_vocabulary_is_refused_not_a_crash(tmp_path):
    path = tmp_path / 'f30k_vocab.pkl'
    path.write_bytes(DEEP_TUPLE_KEY)
    rc, out, _ = load_in_child(path, 'vseimageencoder.release.vocab.read_vocabulary')
    assert rc == 0, out
    assert out.startswith('UnsafeVocabularyError') and str(path) in out


def test_deep_list_inside_a_vocabulary_is_refused(tmp_path):
    # A __main__.Vocabulary whose word2idx is a list nested 20,000 deep: GLOBAL, EMPTY_TUPLE,
    # NEWOBJ, {'word2idx': [[[...]]]}, BUILD.
    data = (b'\x80\x02c__main__\nVocabulary\n)\x81}U\x08word2idx' + deep_list(20000)[2:-1]
            + b'sb.')
    path = tmp_path / 'v.pkl'
    path.write_bytes(data)
    with pytest.raises(vc.UnsafeVocabularyError, match='deeper than'):
        vc.read_vocabulary(path)


def test_vocabulary_word_limit(tmp_path, monkeypatch):
    path = write_py27_vocab(tmp_path / 'v.pkl', vocab_words(300))
    assert len(vc.read_vocabulary(path)) > 200
    monkeypatch.setattr(vc, 'MAX_VOCAB_WORDS', 200)
    with pytest.raises(vc.VocabularyLimitError, match='beyond any VSE\\+\\+ vocabulary'):
        vc.read_vocabulary(path)


def test_vocabulary_fifo_is_refused_without_blocking(tmp_path):
    import os
    fifo = tmp_path / 'f30k_vocab.pkl'
    os.mkfifo(str(fifo))
    with pytest.raises(vc.NotAVocabularyError, match='FIFO'):
        vc.read_vocabulary(fifo)


class _CrashCases:
    def __init__(self, paths, results, peak_mb, returncode, stderr):
        self.paths, self.results, self.peak_mb = paths, results, peak_mb
        self.returncode, self.stderr = returncode, stderr

    def result(self, name):
        out = self.results.get(str(self.paths[name]))
        assert out is not None, 'the child died before %s (exit %d): %s' % (
            name, self.returncode, self.stderr)
        return out


@pytest.fixture(scope='module')
def crash_cases(tmp_path_factory):
    """The checkpoints that crashed the process or took gigabytes, loaded in one child."""
    d = tmp_path_factory.mktemp('hostile')
    paths = {'legacy_deep': legacy_file(d / 'legacy_deep.pth.tar', DEEP_TUPLE_KEY),
             'zip_deep': zip_file(d / 'zip_deep.pth.tar', DEEP_TUPLE_KEY),
             'embed_1e9': _precomp_ckpt(d / 'embed_1e9.pth', torch.zeros(512).expand(10 ** 9, 512), 10 ** 9)}
    main = _torch_style_pickle({'model': [{'fc.weight': _Tensor(_Storage(10 ** 9), (10 ** 9,))}],
                                'opt': {'data_name': 'f30k_precomp'}})
    paths['storage_4gb'] = legacy_file(d / 'storage_4gb.pth', main, pickle.dumps(['0'], 2),
                                       (10 ** 9).to_bytes(8, 'little') + bytes(16))
    n = 64 << 20
    main = _torch_style_pickle({'model': [{'fc.weight': _Tensor(_Storage(n), (n,))}],
                                'opt': {'data_name': 'f30k_precomp'}})
    path = paths['deflated'] = d / 'deflated.pth'
    with zipfile.ZipFile(str(path), 'w') as z:
        z.writestr('archive/data.pkl', main)
        info = zipfile.ZipInfo('archive/data/0')
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, 'w', force_zip64=True) as w:
            chunk = bytes(1 << 20)
            for _ in range(256):
                w.write(chunk)
        z.writestr('archive/version', '3\n')
    # Least harmful first: a regression that crashes the child still leaves results before it.
    order = ['deflated', 'storage_4gb', 'embed_1e9', 'zip_deep', 'legacy_deep']
    results, peak, rc, err = load_all_in_child([paths[k] for k in order])
    return _CrashCases(paths, results, peak, rc, err)


def test_fifo_as_checkpoint_is_named(tmp_path):
    import os
    fifo = tmp_path / 'model_best.pth.tar'
    os.mkfifo(str(fifo))
    with pytest.raises(ck.NotACheckpointError, match='is a FIFO'):
        ck.read_checkpoint(fifo)
