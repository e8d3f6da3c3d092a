"""Files written byte for byte as Python 2.7 wrote the VSE++ releases, for loader tests.

Python 3's pickle module cannot write Python 2 string opcodes, so this module emits
protocol-2 opcodes itself (:class:`Py2Pickler`), following CPython 2.7's ``cPickle`` (torch
0.3 serialised with it) and ``pickle.py`` (VSE++'s ``vocab.py`` used it). It is deliberately
independent of the package and of Python 3's pickler.

How Python 2 values are spelt here: ``bytes`` is a Python 2 ``str`` (SHORT_BINSTRING /
BINSTRING), ``str`` is ``unicode`` (BINUNICODE), ``int`` a Python 2 ``int`` (BININT*, or the
text INT opcode beyond 32 bits as 64-bit cPickle did), :class:`Py2Long` a ``long`` (LONG1).
Objects are memoised by identity, as Python 2 did, so passing the same object twice gives
BINPUT then BINGET. Two things are approximations: cPickle skipped memoising objects with a
reference count below 2 (temporaries), which shifts memo numbers but not meaning; and a
dict's items are written in the order CPython 2.7's hash table held them
(:func:`py2_dict_order`), computed for the default (unrandomised) string hash.

Public helpers:

* :func:`write_py27_checkpoint` -- a VSE++ checkpoint as torch 0.3 on Python 2.7 saved it
  from a GPU-trained model (legacy serialisation, ``torch.cuda.FloatStorage`` on
  ``cuda:0``, ``torch._utils._rebuild_tensor``, GRU weights as views into one flat cuDNN
  buffer).
* :func:`write_py27_vocab` -- a VSE++ ``Vocabulary`` pickle as ``vocab.py`` (run as
  ``__main__``) saved it.
* :func:`write_hostile_py27_vocab` -- the same file shape with code in it, for refusal tests.
"""
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import torch

__all__ = ['Py2Long', 'Global', 'Reduce', 'NewObj', 'PersistentId', 'Py2Pickler', 'py2_hash',
           'py2_dict_order', 'write_py27_checkpoint', 'write_py27_vocab',
           'write_hostile_py27_vocab', 'vocab_words', 'SPECIAL_TOKENS', 'MAGIC_NUMBER',
           'PROTOCOL_VERSION', 'main_pickle_bytes', 'Py27Release',
           'write_py27_release_checkpoint']

# --------------------------------------------------------------------------- opcodes

PROTO, STOP = b'\x80', b'.'
NONE, NEWTRUE, NEWFALSE = b'N', b'\x88', b'\x89'
INT, BININT, BININT1, BININT2, LONG1, BINFLOAT = b'I', b'J', b'K', b'M', b'\x8a', b'G'
SHORT_BINSTRING, BINSTRING, BINUNICODE = b'U', b'T', b'X'
EMPTY_TUPLE, TUPLE1, TUPLE2, TUPLE3, TUPLE, MARK = b')', b'\x85', b'\x86', b'\x87', b't', b'('
EMPTY_LIST, APPEND, APPENDS = b']', b'a', b'e'
EMPTY_DICT, SETITEM, SETITEMS = b'}', b's', b'u'
GLOBAL, REDUCE, NEWOBJ, BUILD, BINPERSID = b'c', b'R', b'\x81', b'b', b'Q'
BINPUT, LONG_BINPUT, BINGET, LONG_BINGET = b'q', b'r', b'h', b'j'

_BATCHSIZE = 1000  # pickle.py and cPickle both batch APPENDS/SETITEMS by 1000


class Py2Long(int):
    """A Python 2 ``long`` (pickled with LONG1 whatever its size)."""


class Global:
    """A module-level class or function, pickled by name (GLOBAL 'module\\nname\\n')."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __repr__(self):
        return 'Global(%r, %r)' % (self.module, self.name)


class Reduce:
    """``func(*args)`` (REDUCE), then ``state`` applied with BUILD when given."""

    def __init__(self, func: Global, args: tuple, state=None):
        self.func, self.args, self.state = func, args, state


class NewObj:
    """A new-style instance as protocol 2 wrote it: cls, args, NEWOBJ, state, BUILD."""

    def __init__(self, cls: Global, args: tuple = (), state=None):
        self.cls, self.args, self.state = cls, args, state


class PersistentId:
    """An object pickled by reference (``persistent_id``): the id, then BINPERSID."""

    def __init__(self, pid):
        self.pid = pid


class Py2Pickler:
    """Emits one protocol-2 pickle (PROTO 2 ... STOP) the way CPython 2.7 did."""

    def __init__(self, dict_order=None):
        self.out = bytearray()
        self.memo: Dict[object, tuple] = {}  # key -> (index, object kept alive)
        self.dict_order = dict_order if dict_order is not None else py2_dict_order

    def dump(self, obj) -> bytes:
        self.out += PROTO + b'\x02'
        self.save(obj)
        self.out += STOP
        return bytes(self.out)

    # -- memo
    def _memo_key(self, obj):
        if isinstance(obj, Global):
            # Python 2 memoised the class object itself: one per module/name.
            return ('global', obj.module, obj.name)
        return id(obj)

    def _put(self, obj):
        key = self._memo_key(obj)
        idx = len(self.memo)
        self.memo[key] = (idx, obj)
        self.out += BINPUT + bytes([idx]) if idx < 256 else LONG_BINPUT + struct.pack('<i', idx)

    def _get(self, obj) -> bool:
        hit = self.memo.get(self._memo_key(obj))
        if hit is None:
            return False
        idx = hit[0]
        self.out += BINGET + bytes([idx]) if idx < 256 else LONG_BINGET + struct.pack('<i', idx)
        return True

    # -- values
    def save(self, obj):
        if obj is None:
            self.out += NONE
        elif obj is True or obj is False:
            self.out += NEWTRUE if obj else NEWFALSE
        elif isinstance(obj, Py2Long):
            self._save_long(int(obj))
        elif isinstance(obj, int):
            self._save_int(obj)
        elif isinstance(obj, float):
            self.out += BINFLOAT + struct.pack('>d', obj)
        elif isinstance(obj, PersistentId):
            # Not memoised: cPickle handed persistent objects to persistent_id first.
            self.save(obj.pid)
            self.out += BINPERSID
        elif self._get(obj):
            pass
        elif isinstance(obj, bytes):
            n = len(obj)
            self.out += (SHORT_BINSTRING + bytes([n]) if n < 256 else BINSTRING + struct.pack('<i', n)) + obj
            self._put(obj)
        elif isinstance(obj, str):
            data = obj.encode('utf-8')
            self.out += BINUNICODE + struct.pack('<i', len(data)) + data
            self._put(obj)
        elif isinstance(obj, tuple):
            self._save_tuple(obj)
        elif isinstance(obj, list):
            self.out += EMPTY_LIST
            self._put(obj)
            self._batched(obj, APPEND, APPENDS, self.save)
        elif isinstance(obj, dict):
            self.out += EMPTY_DICT
            self._put(obj)
            items = [(k, obj[k]) for k in self.dict_order(list(obj))]
            self._batched(items, SETITEM, SETITEMS, self._save_pair)
        elif isinstance(obj, Global):
            self.out += GLOBAL + obj.module.encode('ascii') + b'\n' + obj.name.encode('ascii') + b'\n'
            self._put(obj)
        elif isinstance(obj, Reduce):
            self.save(obj.func)
            self.save(tuple(obj.args))
            self.out += REDUCE
            self._put(obj)
            if obj.state is not None:
                self.save(obj.state)
                self.out += BUILD
        elif isinstance(obj, NewObj):
            self.save(obj.cls)
            self.save(tuple(obj.args))
            self.out += NEWOBJ
            self._put(obj)
            if obj.state is not None:
                self.save(obj.state)
                self.out += BUILD
        else:
            raise TypeError('no Python 2 spelling for %r' % (type(obj),))

    def _save_pair(self, kv):
        self.save(kv[0])
        self.save(kv[1])

    def _batched(self, items, one, many, save_item):
        for start in range(0, len(items), _BATCHSIZE):
            batch = items[start:start + _BATCHSIZE]
            if len(batch) == 1:
                save_item(batch[0])
                self.out += one
            else:
                self.out += MARK
                for item in batch:
                    save_item(item)
                self.out += many

    def _save_tuple(self, t):
        if not t:
            self.out += EMPTY_TUPLE  # the empty tuple was never memoised
            return
        if len(t) <= 3:
            for item in t:
                self.save(item)
            self.out += (TUPLE1, TUPLE2, TUPLE3)[len(t) - 1]
        else:
            self.out += MARK
            for item in t:
                self.save(item)
            self.out += TUPLE
        self._put(t)

    def _save_int(self, v):
        if 0 <= v < 256:
            self.out += BININT1 + bytes([v])
        elif 0 <= v < 65536:
            self.out += BININT2 + struct.pack('<H', v)
        elif -2 ** 31 <= v < 2 ** 31:
            self.out += BININT + struct.pack('<i', v)
        elif -2 ** 63 <= v < 2 ** 63:
            # 64-bit cPickle wrote ints beyond 32 bits as text, even in binary protocols.
            self.out += INT + str(v).encode('ascii') + b'\n'
        else:
            self._save_long(v)  # Python 2 made such values longs

    def _save_long(self, v):
        n = (v.bit_length() + 8) // 8 if v else 0
        data = v.to_bytes(n, 'little', signed=True) if v else b''
        # pickle.py trims a redundant sign byte as encode_long does
        if len(data) > 1 and ((data[-1] == 0 and data[-2] < 0x80) or (data[-1] == 0xFF and data[-2] >= 0x80)):
            data = data[:-1]
        if len(data) >= 256:
            raise ValueError('LONG4 not needed here')
        self.out += LONG1 + bytes([len(data)]) + data


# --------------------------------------------------------------------------- Python 2 dicts

_MASK64 = (1 << 64) - 1


def _signed64(x: int) -> int:
    x &= _MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


def py2_hash(key) -> int:
    """``hash(key)`` in 64-bit CPython 2.7 without -R, for str, unicode and int keys."""
    if isinstance(key, bool) or isinstance(key, int):
        v = _signed64(int(key))
        return -2 if v == -1 else v
    if isinstance(key, bytes):
        units = list(key)
    elif isinstance(key, str):
        units = [ord(c) for c in key]  # a UCS-4 build, as Linux distributions shipped
    else:
        raise TypeError('no Python 2 hash for %r' % type(key))
    if not units:
        return 0
    x = units[0] << 7
    for u in units:
        x = _signed64((1000003 * x) ^ u)
    x = _signed64(x ^ len(units))
    return -2 if x == -1 else x


def py2_dict_order(keys: Sequence) -> list:
    """The iteration order of a CPython 2.7 dict whose keys were inserted in this order."""
    table: List[Optional[object]] = [None] * 8

    def insert(tab, key):
        mask = len(tab) - 1
        h = py2_hash(key) & _MASK64
        i, perturb = h & mask, h
        while tab[i & mask] is not None:
            i = ((i << 2) + i + perturb + 1) & _MASK64
            perturb >>= 5
        tab[i & mask] = key

    used = 0
    for key in keys:
        insert(table, key)
        used += 1
        if used * 3 >= len(table) * 2:  # no deletions, so fill == used
            minused = (2 if used > 50000 else 4) * used
            size = 8
            while size <= minused:
                size <<= 1
            old, table = table, [None] * size
            for k in old:
                if k is not None:
                    insert(table, k)
    return [k for k in table if k is not None]


# --------------------------------------------------------------------------- checkpoints

MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
PROTOCOL_VERSION = 1001

_STORAGE_TYPES = {torch.float32: 'FloatStorage', torch.float64: 'DoubleStorage',
                  torch.int64: 'LongStorage', torch.uint8: 'ByteStorage'}


def _storage_bytes(t: torch.Tensor) -> bytes:
    # torch 0.3's _write_file: int64 element count, then the elements, little-endian.
    a = t.detach().contiguous().cpu().numpy()
    return struct.pack('<q', a.size) + a.astype(a.dtype.newbyteorder('<'), copy=False).tobytes()


def write_py27_checkpoint(path, image_state_dict: Mapping[str, torch.Tensor],
                          text_state_dict: Mapping[str, torch.Tensor], opt_fields: Mapping,
                          epoch: int = 14, best_rsum: float = 403.2, eiters: int = 33000,
                          location: str = 'cuda:0', storage_module: str = 'torch.cuda',
                          flatten_rnn: bool = True, seed: int = 0) -> Path:
    """Write a VSE++ checkpoint as torch 0.3 on Python 2.7 saved a GPU-trained model.

    The file is ``torch.save({'epoch', 'model': [image_sd, text_sd], 'best_rsum', 'opt',
    'Eiters'})`` in the legacy format: pickles of the magic number, protocol version 1001
    and sys_info; the main pickle (tensors as ``torch._utils._rebuild_tensor(storage,
    offset, size, stride)``, storages by persistent id ``('storage', <storage_module>.
    FloatStorage, key, location, numel, None)``, state dicts as ``collections.OrderedDict``
    reduced from ``[[key, value], ...]``, ``opt`` an ``argparse.Namespace`` built with NEWOBJ
    and BUILD); the sorted list of storage keys; then each storage as an int64 element count
    and its little-endian bytes. Keys, option names and str option values are Python 2 byte
    strings. ``opt_fields`` is in argparse's definition order (it decides the dict layout);
    str values must be ASCII.

    With ``flatten_rnn`` the text state dict's ``rnn.*`` tensors are views into one shared
    storage at increasing offsets, with slack at its end, as cuDNN's flattened GRU weights
    were on a GPU. Storage keys are pointer-like numbers (``str(storage._cdata)``) whose
    sorted order differs from the order the tensors appear in.
    """
    path = Path(path)
    gen = torch.Generator().manual_seed(seed)
    storages: Dict[bytes, torch.Tensor] = {}  # key -> flat data
    storage_word = b'storage'  # one literal: Python 2 memoised it, so later pids BINGET it
    globals_ = {}

    def glob(module, name):
        return globals_.setdefault((module, name), Global(module, name))

    def new_key() -> bytes:
        while True:
            addr = 0x55d0_0000_0000 + int(torch.randint(0, 1 << 30, (1,), generator=gen)) * 16
            key = str(addr).encode('ascii')
            if key not in storages:
                return key

    def pid(key: bytes, flat: torch.Tensor):
        # torch 0.3 wrote ('storage', type, str(root._cdata), location_tag, root.size(), None)
        return PersistentId((storage_word, glob(storage_module, _STORAGE_TYPES[flat.dtype]), key,
                             location.encode('ascii'), flat.numel(), None))

    def tensor(t: torch.Tensor, key: bytes, flat: torch.Tensor, offset: int):
        if t.dtype not in _STORAGE_TYPES:
            raise TypeError('no torch 0.3 storage for dtype %s' % t.dtype)
        t = t.detach().contiguous()
        return Reduce(glob('torch._utils', '_rebuild_tensor'),
                      (pid(key, flat), offset, tuple(int(s) for s in t.shape),
                       tuple(int(s) for s in t.stride())))

    def state_dict(sd: Mapping[str, torch.Tensor], flat_prefix: Optional[str]):
        items = []
        shared = [(k, v) for k, v in sd.items() if flat_prefix and k.startswith(flat_prefix)]
        shared_at = {}
        if shared:
            key = new_key()
            parts = [v.detach().contiguous().reshape(-1) for _, v in shared]
            slack = torch.zeros(7, dtype=parts[0].dtype)  # cuDNN rounded the buffer up
            flat = torch.cat(parts + [slack])
            storages[key] = flat
            offset = 0
            for (k, v), part in zip(shared, parts):
                shared_at[k] = (key, offset)
                offset += part.numel()
        for k, v in sd.items():
            if k in shared_at:
                key, offset = shared_at[k]
                items.append([k.encode('ascii'), tensor(v, key, storages[key], offset)])
            else:
                key = new_key()
                storages[key] = v.detach().contiguous().reshape(-1).clone()
                items.append([k.encode('ascii'), tensor(v, key, storages[key], 0)])
        return Reduce(glob('collections', 'OrderedDict'), (items,))

    def py2_value(v):
        if isinstance(v, str):
            return v.encode('ascii')
        return v

    opt_state = {k.encode('ascii'): py2_value(v) for k, v in opt_fields.items()}
    ckpt = {
        b'epoch': epoch,
        b'model': [state_dict(image_state_dict, None),
                   state_dict(text_state_dict, 'rnn.' if flatten_rnn else None)],
        b'best_rsum': float(best_rsum),
        b'opt': NewObj(glob('argparse', 'Namespace'), (), opt_state),
        b'Eiters': eiters,
    }
    sys_info = {b'protocol_version': PROTOCOL_VERSION, b'little_endian': True,
                b'type_sizes': {b'short': 2, b'int': 4, b'long': 8}}
    keys = sorted(storages)
    with open(str(path), 'wb') as f:
        f.write(Py2Pickler().dump(Py2Long(MAGIC_NUMBER)))
        f.write(Py2Pickler().dump(PROTOCOL_VERSION))
        f.write(Py2Pickler().dump(sys_info))
        f.write(Py2Pickler().dump(ckpt))
        f.write(Py2Pickler().dump(list(keys)))
        for key in keys:
            f.write(_storage_bytes(storages[key]))
    return path


def main_pickle_bytes(path) -> bytes:
    """The main pickle (the checkpoint dict) of a legacy file, for opcode inspection."""
    import io
    import pickletools
    data = Path(path).read_bytes()
    f = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, sys_info
        for _op in pickletools.genops(f):
            pass
    start = f.tell()
    for _op in pickletools.genops(f):
        pass
    return data[start:f.tell()]


# --------------------------------------------------------------------------- vocabularies

#: VSE++'s vocab.py added these first, as byte-string literals.
SPECIAL_TOKENS = (b'<pad>', b'<start>', b'<end>', b'<unk>')


def vocab_words(n: int = 40) -> List[str]:
    """Caption words as nltk gave them (unicode), some non-ASCII, none special."""
    base = ['a', 'man', 'riding', 'horse', 'on', 'the', 'beach', '.', ',', 'dog', 'two',
            'women', 'caf\u00e9', 'na\u00efve', 'jalape\u00f1o', '\u00fcber', 'stra\u00dfe',
            'cr\u00e8me', 'r\u00e9sum\u00e9', 'pi\u00f1ata', "'s", 'playing', 'with', 'ball',
            'red', 'shirt', 'in', 'of', 'is', 'are', 'street', 'children', 'water', 'snow']
    words = list(base)
    i = 0
    while len(words) < n:
        words.append('word%d' % i)
        i += 1
    return words[:n]


def _vocabulary(words: Iterable[str], module: str) -> NewObj:
    # The object graph of vocab.py's Vocabulary after build_vocab: the same word object
    # is the key in word2idx and the value in idx2word, so the pickle refers back to it.
    word2idx, idx2word, idx = {}, {}, 0
    for w in list(SPECIAL_TOKENS) + [w for w in words]:
        if w in word2idx:
            continue
        word2idx[w] = idx
        idx2word[idx] = w
        idx += 1
    # Instance dict: attributes set in __init__ order (word2idx, idx2word, idx).
    state = {b'word2idx': word2idx, b'idx2word': idx2word, b'idx': idx}
    return NewObj(Global(module, 'Vocabulary'), (), state)


def write_py27_vocab(path, words: Sequence[str], module: str = '__main__') -> Path:
    """Write ``<data_name>_vocab.pkl`` as VSE++'s vocab.py did under Python 2.7.

    ``pickle.dump(vocab, f, pickle.HIGHEST_PROTOCOL)`` of a ``Vocabulary`` (class under
    ``module``: ``__main__`` as released, or ``vocab``): GLOBAL, EMPTY_TUPLE, NEWOBJ, then
    its ``__dict__`` {'word2idx': {word: id}, 'idx2word': {id: word}, 'idx': n} and BUILD.
    The special tokens ``<pad>``=0, ``<start>``=1, ``<end>``=2, ``<unk>``=3 and the attribute
    names are byte strings; ``words`` (unicode) follow in order, ids from 4, duplicates
    skipped. idx2word's values are the word objects already written (BINGET/LONG_BINGET).
    """
    path = Path(path)
    path.write_bytes(Py2Pickler().dump(_vocabulary(words, module)))
    return path


def write_hostile_py27_vocab(path, marker, kind: str = 'top') -> Path:
    """A vocabulary-shaped Python 2 pickle that runs ``touch <marker>`` if unpickled freely.

    ``kind``: ``'top'`` -- the whole pickle is ``os.system(...)`` (GLOBAL 'os system',
    REDUCE); ``'nested'`` -- a genuine ``__main__.Vocabulary`` whose ``idx`` is
    ``os.system(...)``; ``'posix'`` -- like ``'top'`` via ``posix system``, the spelling
    Python 2 itself wrote for ``os.system`` on Linux. A safe loader refuses all of them and
    ``marker`` never appears.
    """
    cmd = ('touch %s' % marker).encode('ascii')
    if kind == 'top':
        obj = Reduce(Global('os', 'system'), (cmd,))
    elif kind == 'posix':
        obj = Reduce(Global('posix', 'system'), (cmd,))
    elif kind == 'nested':
        obj = _vocabulary(vocab_words(6), '__main__')
        obj.state[b'idx'] = Reduce(Global('os', 'system'), (cmd,))
    else:
        raise ValueError('unknown kind %r' % kind)
    path = Path(path)
    path.write_bytes(Py2Pickler().dump(obj))
    return path


# --------------------------------------------------------------------------- a whole release

class Py27Release:
    """What :func:`write_py27_release_checkpoint` wrote, for reference computations."""

    def __init__(self, path, backbone, fc, embed, rnn, opt_fields, text_sd):
        self.path, self.backbone, self.fc = path, backbone, fc
        self.embed, self.rnn, self.opt_fields = embed, rnn, opt_fields
        self.text_sd = text_sd  # the text half as written: embed.weight, rnn.*


def write_py27_release_checkpoint(path, cnn_type: str = 'resnet18', embed_size: int = 32,
                                  word_dim: int = 8, num_layers: int = 1, vocab_size: int = 44,
                                  use_abs: bool = False, no_imgnorm: bool = False,
                                  data_name: str = 'f30k', old_vgg_keys: bool = True,
                                  seed: int = 0, **kwargs) -> Py27Release:
    """A full-image VSE++ checkpoint with random weights, written as the releases were.

    Image half in the release key layout (``tests/support/vsepp_release.py``: DataParallel prefixes,
    old VGG classifier indices when ``old_vgg_keys``, no ``num_batches_tracked``); text half
    ``embed.weight`` (vocab_size, word_dim) and a ``num_layers``-layer GRU(word_dim,
    embed_size) as VSE++'s ``EncoderText`` held them; ``opt`` with VSE++'s train.py fields.
    ``kwargs`` go to :func:`write_py27_checkpoint`. Returns the modules for reference
    computations (``embed``: nn.Embedding, ``rnn``: nn.GRU with batch_first=True).
    """
    from tests.support.vsepp_release import _release_opt, make_backbone, release_image_state_dict

    backbone, width = make_backbone(cnn_type, seed)
    torch.manual_seed(seed + 1)
    fc = torch.nn.Linear(width, embed_size)
    embed = torch.nn.Embedding(vocab_size, word_dim)
    rnn = torch.nn.GRU(word_dim, embed_size, num_layers, batch_first=True)
    image_sd = release_image_state_dict(backbone, fc, cnn_type, old_vgg_keys, torch03=True)
    text_sd = OrderedDict([('embed.weight', embed.weight.detach().clone())])
    for k, v in rnn.state_dict().items():
        text_sd['rnn.' + k] = v.detach().clone()
    opt = vars(_release_opt(cnn_type, embed_size, 4096, data_name, no_imgnorm, use_abs))
    opt.update(word_dim=word_dim, num_layers=num_layers)
    # train.py set vocab_size after parsing, so it came last in the Namespace's __dict__
    opt.pop('vocab_size', None)
    opt['vocab_size'] = vocab_size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_py27_checkpoint(path, image_sd, text_sd, opt, seed=seed, **kwargs)
    return Py27Release(path, backbone.eval(), fc, embed.eval(), rnn.eval(), opt, text_sd)
