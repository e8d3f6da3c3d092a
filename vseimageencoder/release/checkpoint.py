"""Safely unpickling VSE++ checkpoints and loading them into a :class:`VSEImageTower` (or the
text tower), and writing the release format back.
"""
import argparse
import contextlib
import logging
import pickle
import struct
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import torch

from vseimageencoder.release.locate import (  # noqa: F401  (re-exported: old import paths keep working)
    CHECKPOINT_NAME, DEFAULT_MODEL, DEFAULT_SEARCH_DIRS,
    PACKAGE_PARENT_HINT, PathLike, CheckpointError, CheckpointNotFoundError,
    UnsafeCheckpointError, NotACheckpointError, NotVSECheckpointError, CheckpointIntegrityError,
    CheckpointLimitError, CheckpointTooShortError, MAX_EMBED_SIZE, MAX_IMG_DIM, MAX_WORD_DIM,
    MAX_VOCAB_SIZE, MAX_NUM_LAYERS, MAX_PICKLE_BYTES, MAX_PICKLE_OPS, _STORAGE_ELEMENT_SIZES,
    resolve_checkpoint_path, download_command, _unique)
from vseimageencoder.model.image import SUPPORTED_FAMILIES, VSEImageTower, build_tower
from vseimageencoder.files.regular import kind_of
from vseimageencoder.release.pickle_scan import (MalformedPickleError, PickleTooDeepError,
                          PickleTooLargeError, scan_pickle, scan_pickles)
from vseimageencoder.model.text import VSETextTower, build_text_tower
from vseimageencoder.release.weights import WeightsError, verify_record

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TowerOptions:
    """The training options that shape the image tower (VSE++ ``opt`` fields)."""

    cnn_type: Optional[str]  # None for ``*_precomp`` models, which have no backbone
    embed_size: int = 1024
    img_dim: int = 4096
    no_imgnorm: bool = False
    use_abs: bool = False
    data_name: str = ''

    @property
    def precomputed(self) -> bool:
        return self.cnn_type is None


# --------------------------------------------------------------------------- unpickling

@contextlib.contextmanager
def _namespace_allowed():
    """Admit ``argparse.Namespace`` (the pickled ``opt``) to torch's weights-only unpickler."""
    ser = torch.serialization
    if hasattr(ser, 'safe_globals'):  # torch >= 2.5: scoped, leaves no global trace
        with ser.safe_globals([argparse.Namespace]):
            yield
    elif hasattr(ser, 'add_safe_globals'):  # torch 2.4
        ser.add_safe_globals([argparse.Namespace])
        yield
    else:
        raise CheckpointError(
            'torch %s cannot unpickle checkpoints safely (no weights-only allow-list); '
            'torch >= 2.4 is required' % torch.__version__)


def _is_refused_global(message: str) -> bool:
    # torch's weights-only unpickler says so when a pickle names a callable or class
    # outside its allow-list; other unpickling errors mean a broken or foreign file.
    markers = ('Unsupported global', 'Unsupported class', 'GLOBAL', 'not an allowed global',
               'Trying to call reduce')
    return any(m in message for m in markers)


def read_checkpoint(path: PathLike) -> Mapping:
    """Unpickle a checkpoint file onto the CPU, admitting no code.

    A released checkpoint (``runs/<name>/model_best.pth.tar``) is a legacy (pre-zip)
    ``torch.save`` of ``{'epoch': int, 'model': [image_state_dict, text_state_dict],
    'best_rsum': float, 'opt': argparse.Namespace(...), 'Eiters': int}``; zip checkpoints
    are read too. Tensors go to the CPU. Loading is narrow on purpose: a hostile pickle is
    refused before any of its code runs.
    Raises :class:`UnsafeCheckpointError` for a pickle that would import or call anything
    but tensors, plain containers and ``argparse.Namespace``, and
    :class:`NotACheckpointError` for files that are not torch checkpoints.
    """
    from vseimageencoder.files.regular import NotARegularFileError, open_regular

    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise NotACheckpointError('%s is %s, not a checkpoint file'
                                      % (path, kind_of(path.stat().st_mode)))
        raise CheckpointNotFoundError('checkpoint file %s does not exist' % path)
    try:
        with open_regular(path) as f:  # a FIFO swapped in since is_file() would block open()
            head = f.read(4)
    except NotARegularFileError as e:
        raise NotACheckpointError(str(e)) from None
    if not head:
        raise NotACheckpointError('checkpoint file %s is empty' % path)
    # torch.save writes a zip archive, or (legacy format) a pickle, which opens with PROTO.
    if not (head.startswith(b'PK') or head.startswith(b'\x80')):
        raise NotACheckpointError('%s is not a torch checkpoint: it is neither a zip archive nor a '
                                  'pickle (starts with %r)' % (path, head))
    precheck_checkpoint(path)
    try:
        with _namespace_allowed(), warnings.catch_warnings():
            # torch warns about pickle protocols other than 2; the unpickler decides anyway.
            warnings.simplefilter('ignore', UserWarning)
            obj = torch.load(str(path), map_location='cpu', weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        msg = str(e)
        if _is_refused_global(msg):
            raise UnsafeCheckpointError(
                'refused to load %s: its pickle names objects other than tensors and plain '
                'data, which could run code (%s)' % (path, _first_line_of_interest(msg))) from None
        raise NotACheckpointError('%s is not a torch checkpoint (%s)'
                                  % (path, _first_line_of_interest(msg))) from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, KeyError,
            AttributeError, TypeError, IndexError, UnicodeDecodeError, RecursionError,
            MemoryError, struct.error) as e:
        raise NotACheckpointError('%s is not a readable torch checkpoint (%s: %s)'
                                  % (path, type(e).__name__, _first_line_of_interest(str(e)))) from None
    check_tensor_sizes(obj, path)
    return obj


def precheck_checkpoint(path: PathLike) -> None:
    """Check a checkpoint file's pickles and declared storages before torch reads it.

    Every pickle in it is walked opcode by opcode (:func:`~vseimageencoder.release.pickle_scan.
    scan_pickle`): nesting deeper than the pickle module can safely build is
    :class:`UnsafeCheckpointError`; more than :data:`MAX_PICKLE_BYTES` or
    :data:`MAX_PICKLE_OPS` is :class:`CheckpointLimitError`. Each storage the pickle
    declares must be of a known type and, together, no larger than the file's data; in a
    zip checkpoint each must have its record, stored uncompressed at exactly its size (torch
    never compresses, so a compressed record is refused rather than inflated).
    """
    from vseimageencoder.files.regular import open_regular

    path = Path(path)
    size = path.stat().st_size
    try:
        with open_regular(path) as f:
            head = f.read(4)
            f.seek(0)
            if head.startswith(b'PK'):
                _precheck_zip(f, size, path)
            else:
                data = f.read(min(size, 2 * MAX_PICKLE_BYTES))
                # torch's legacy format: magic number, protocol, sys_info, the checkpoint
                # dict, the storage keys; then each storage: int64 element count, data.
                scans, offset = scan_pickles(data, 5, max_ops=MAX_PICKLE_OPS,
                                             max_bytes=MAX_PICKLE_BYTES, continues=len(data) < size)
                _check_storages(scans[3].persistent_ids, path, size - offset, header=8)
    except PickleTooDeepError as e:
        raise UnsafeCheckpointError('refused to load %s: %s; unpickling it could crash the process'
                                    % (path, e.reason)) from None
    except PickleTooLargeError as e:
        raise CheckpointLimitError('refused to load %s: its pickle is too large (%s)'
                                   % (path, e.reason)) from None
    except (MalformedPickleError, zipfile.BadZipFile, EOFError) as e:
        raise NotACheckpointError('%s is not a readable torch checkpoint (%s)' % (path, e)) from None


def _precheck_zip(f, size: int, path: Path) -> None:
    with zipfile.ZipFile(f) as z:
        infos = z.infolist()
        pickles = [i for i in infos if i.filename == 'data.pkl' or i.filename.endswith('/data.pkl')]
        if len(pickles) != 1:
            raise NotACheckpointError('%s is a zip archive but not a torch checkpoint: %s data.pkl'
                                      % (path, 'no' if not pickles else 'more than one'))
        for i in infos:
            if i.compress_type != zipfile.ZIP_STORED:
                raise CheckpointLimitError(
                    'refused to load %s: its record %s is compressed (%d bytes inflating to %d); '
                    'torch.save stores records uncompressed' % (path, i.filename, i.compress_size,
                                                                 i.file_size))
        total = sum(i.file_size for i in infos)
        if total > size:
            raise CheckpointLimitError('refused to load %s: its records claim %d bytes, more than '
                                       'the file\'s %d' % (path, total, size))
        pkl = pickles[0]
        if pkl.file_size > MAX_PICKLE_BYTES:
            raise CheckpointLimitError('refused to load %s: its data.pkl is %d bytes, over the '
                                       'limit of %d' % (path, pkl.file_size, MAX_PICKLE_BYTES))
        scan = scan_pickle(z.read(pkl), max_ops=MAX_PICKLE_OPS)
        prefix = pkl.filename[:-len('data.pkl')]
        records = {i.filename: i.file_size for i in infos}
        for key, nbytes in _check_storages(scan.persistent_ids, path, size, header=0).items():
            name = prefix + 'data/' + key
            if records.get(name) != nbytes:
                raise CheckpointLimitError(
                    'refused to load %s: storage %s declares %d bytes, but its record holds %s'
                    % (path, key, nbytes, 'none' if name not in records else records[name]))


def _check_storages(pids, path: Path, room: int, header: int):
    """``{key: bytes}`` of the storages the persistent ids declare, each of a known type, all
    together (plus ``header`` bytes each) within ``room`` bytes of the file."""
    storages = {}
    for pid in pids:
        if pid is None or len(pid) < 5 or pid[0] != 'storage':
            raise NotACheckpointError('%s: a persistent id %r is not a torch storage declaration'
                                      % (path, pid if pid is None else pid[:5]))
        stype, key, numel = pid[1], pid[2], pid[4]
        elsize = _STORAGE_ELEMENT_SIZES.get(str(stype).rsplit('.', 1)[-1])
        if elsize is None or not isinstance(key, str) or isinstance(numel, bool) \
                or not isinstance(numel, int) or numel < 0:
            raise NotACheckpointError('%s: storage declaration %r is not one torch writes'
                                      % (path, pid[:5]))
        storages[key] = max(storages.get(key, 0), numel * elsize)
    total = sum(storages.values()) + header * len(storages)
    if total > room:
        raise CheckpointTooShortError(
            'refused to load %s: its %d storages declare %d bytes, but the file holds %d bytes '
            'of tensor data (truncated, or forged to allocate more than it holds)'
            % (path, len(storages), total, max(room, 0)))
    return storages


def check_tensor_sizes(ckpt, path: PathLike) -> None:
    """Refuse tensors of ``ckpt['model']`` that claim more elements than their storage holds
    (stride-0 or overlapping views, which would make a small file act as a huge model)."""
    model = ckpt.get('model') if isinstance(ckpt, Mapping) else None
    if not isinstance(model, (list, tuple)):
        return
    for half in model:
        if not isinstance(half, Mapping):
            continue
        for key, t in half.items():
            if not isinstance(t, torch.Tensor) or t.numel() == 0:
                continue
            held = t.untyped_storage().nbytes() - t.storage_offset() * t.element_size()
            if t.numel() * t.element_size() > held:
                raise CheckpointLimitError(
                    'refused to load %s: tensor %s of shape %s (strides %s) claims %d elements, but '
                    'its storage holds %d' % (path, key, tuple(t.shape), tuple(t.stride()),
                                              t.numel(), max(held, 0) // t.element_size()))


def _first_line_of_interest(msg: str) -> str:
    lines = [l.strip() for l in msg.splitlines() if l.strip()]
    for l in lines:
        if 'WeightsUnpickler error:' in l:
            return l.split('WeightsUnpickler error:', 1)[1].strip()[:300]
        if 'Unsupported' in l or 'GLOBAL' in l:
            return l[:300]
    return (lines[0] if lines else msg)[:300]


# --------------------------------------------------------------------------- options

_OPTION_DEFAULTS = dict(embed_size=1024, img_dim=4096, no_imgnorm=False, use_abs=False,
                        data_name='', cnn_type='vgg19')


def stored_options(ckpt: Mapping, path: PathLike) -> Mapping:
    """A loaded checkpoint's ``opt`` as a mapping, after checking the release layout."""
    if not isinstance(ckpt, Mapping) or 'model' not in ckpt or 'opt' not in ckpt:
        found = sorted(map(str, ckpt.keys()))[:10] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise NotVSECheckpointError(
            "%s is not a VSE++ checkpoint: expected a dict with 'model' and 'opt' entries, found %s"
            % (path, found))
    opt = ckpt['opt']
    if isinstance(opt, argparse.Namespace):
        opt = vars(opt)
    if not isinstance(opt, Mapping):
        raise NotVSECheckpointError("%s: 'opt' is a %s, expected the training options "
                                    '(argparse.Namespace or dict)' % (path, type(opt).__name__))
    return opt


_BOUNDS = {'embed_size': 'MAX_EMBED_SIZE', 'img_dim': 'MAX_IMG_DIM', 'word_dim': 'MAX_WORD_DIM',
           'vocab_size': 'MAX_VOCAB_SIZE', 'num_layers': 'MAX_NUM_LAYERS'}


def _check_bounds(path: PathLike, **sizes: int) -> None:
    for key, value in sizes.items():
        bound = globals()[_BOUNDS[key]]
        if value > bound:
            raise CheckpointLimitError(
                '%s: %s=%d is beyond any VSE++ model (limit %d, vseimageencoder.release.checkpoint.%s); '
                'refused before building a tower that size' % (path, key, value, bound, _BOUNDS[key]))


def read_options(ckpt: Mapping, path: PathLike) -> TowerOptions:
    """The tower-shaping options of a loaded checkpoint's ``opt``.

    Options absent from ``opt`` take VSE++'s training defaults (``cnn_type='vgg19'``,
    ``embed_size=1024``, ``img_dim=4096``, no flags). ``opt`` may be an
    ``argparse.Namespace`` (as released) or a dict (re-saved checkpoints).
    """
    opt = stored_options(ckpt, path)
    vals = dict(_OPTION_DEFAULTS)
    vals.update({k: opt[k] for k in _OPTION_DEFAULTS if k in opt and opt[k] is not None})
    data_name = str(vals['data_name'])
    precomputed = data_name.endswith('precomp')
    cnn_type = None if precomputed else str(vals['cnn_type'])
    if cnn_type is not None and not cnn_type.startswith(SUPPORTED_FAMILIES):
        raise NotVSECheckpointError(
            '%s: cnn_type %r is not supported; VSE++ image towers use torchvision vgg* or resnet*'
            % (path, cnn_type))
    for key in ('embed_size', 'img_dim'):
        try:
            vals[key] = int(vals[key])
        except (TypeError, ValueError):
            raise NotVSECheckpointError('%s: option %s=%r is not an integer' % (path, key, vals[key])) from None
        if vals[key] <= 0:
            raise NotVSECheckpointError('%s: option %s=%r must be positive' % (path, key, vals[key]))
    _check_bounds(path, embed_size=vals['embed_size'], img_dim=vals['img_dim'])
    return TowerOptions(cnn_type=cnn_type, embed_size=vals['embed_size'], img_dim=vals['img_dim'],
                        no_imgnorm=bool(vals['no_imgnorm']), use_abs=bool(vals['use_abs']),
                        data_name=data_name)


def image_state_dict(ckpt: Mapping, path: PathLike) -> Dict[str, torch.Tensor]:
    """The image encoder's state dict: the first of ``ckpt['model']``."""
    model = ckpt['model']
    if not isinstance(model, (list, tuple)) or not model or not isinstance(model[0], Mapping):
        raise NotVSECheckpointError(
            "%s: 'model' should be [image_state_dict, text_state_dict], found %s"
            % (path, type(model).__name__))
    sd = model[0]
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise NotVSECheckpointError('%s: image state dict entries that are not tensors: %s'
                                    % (path, ', '.join(map(str, bad[:5]))))
    return dict(sd)


# --------------------------------------------------------------------------- key remaps

#: The one key mapping between the tower and the release format, read and written: VSE++
#: wrapped the backbone in DataParallel, the whole ResNet but only VGG's ``features``.
#: Family -> (tower key prefix, release key prefix).
RELEASE_CNN_PREFIXES: Dict[str, Tuple[str, str]] = {
    'resnet': ('cnn.', 'cnn.module.'),
    'vgg': ('cnn.features.', 'cnn.features.module.'),
}

#: Release prefixes renamed on reading, in order; ``module.`` is a whole model wrapped in
#: DataParallel (re-saved checkpoints).
PREFIX_REMAPS: Tuple[Tuple[str, str], ...] = (('module.', ''),) + tuple(
    (release, tower) for tower, release in RELEASE_CNN_PREFIXES.values())

#: VGG classifiers saved before torchvision put Dropout after the ReLUs:
#: (Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear) -> (Linear, ReLU, Dropout, ...).
OLD_VGG_CLASSIFIER_REMAPS: Tuple[Tuple[str, str], ...] = (
    ('cnn.classifier.1.', 'cnn.classifier.0.'),
    ('cnn.classifier.4.', 'cnn.classifier.3.'),
)


def remap_state_dict(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Keys of a released image state dict renamed to those of :class:`VSEImageTower`."""
    out: Dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        for old, new in PREFIX_REMAPS:
            if key.startswith(old):
                key = new + key[len(old):]
        out[key] = value
    # Index 1 holds weights only in the old layout (in the new one it is a ReLU).
    if 'cnn.classifier.1.weight' in out:
        renamed = {}
        for key, value in out.items():
            for old, new in OLD_VGG_CLASSIFIER_REMAPS:
                if key.startswith(old):
                    key = new + key[len(old):]
                    break
            renamed[key] = value
        out = renamed
    return out


def release_state_dict(sd: Mapping[str, torch.Tensor], cnn_type: Optional[str]) -> Dict[str, torch.Tensor]:
    """A :class:`VSEImageTower` state dict keyed as the releases were (the reverse of
    :func:`remap_state_dict`, by :data:`RELEASE_CNN_PREFIXES`); ``cnn_type`` None (a
    precomputed-feature tower) keeps the keys. Tensors are copied to the CPU, contiguous."""
    prefixes = None
    if cnn_type:
        prefixes = RELEASE_CNN_PREFIXES['vgg' if cnn_type.startswith('vgg') else 'resnet']
    out = {}
    for k, v in sd.items():
        if prefixes and k.startswith(prefixes[0]):
            k = prefixes[1] + k[len(prefixes[0]):]
        out[k] = v.detach().to('cpu').contiguous().clone()  # channels-last weights saved plain
    return out


# --------------------------------------------------------------------------- loading

def read_verified_checkpoint(path: Path) -> Mapping:
    """:func:`read_checkpoint`, after checking the file against its download record (size and
    sha256, ``<file>.json`` written by ``vseimageencoder download``) when there is one."""
    if path.is_file():
        try:
            verify_record(path)
        except WeightsError as e:
            raise CheckpointIntegrityError(str(e)) from None
    return read_checkpoint(path)


def _adopt(tower: torch.nn.Module, sd: Mapping[str, torch.Tensor]) -> None:
    """Strict load of a checked state dict (floats as float32), then eval mode, no gradients."""
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    # assign=True (torch >= 2.1) adopts the checkpoint's tensors instead of copying them
    # into the freshly allocated ones.
    tower.load_state_dict(sd, strict=True, **({'assign': True} if _supports_assign() else {}))
    tower.eval()
    tower.requires_grad_(False)


def _supports_assign() -> bool:
    import inspect
    return 'assign' in inspect.signature(torch.nn.Module.load_state_dict).parameters


def load_tower(path: PathLike) -> Tuple[VSEImageTower, TowerOptions]:
    """Build the image tower a checkpoint file describes and load its weights strictly.

    When a download record (``<file>.json``, written by ``vseimageencoder download``) lies
    beside the file, its size and sha256 are checked first. Returns the tower in eval mode
    on the CPU, float32, with gradients off, and its options. Raises a :class:`CheckpointError` subclass naming ``path`` and the fault.
    """
    path = Path(path)
    ckpt = read_verified_checkpoint(path)
    opts = read_options(ckpt, path)
    sd = remap_state_dict(image_state_dict(ckpt, path))
    has_cnn = any(k.startswith('cnn.') for k in sd)
    if opts.precomputed and has_cnn:
        raise NotVSECheckpointError('%s: data_name %r says precomputed features, but the '
                                    'checkpoint holds backbone weights' % (path, opts.data_name))
    if not opts.precomputed and not has_cnn:
        raise NotVSECheckpointError(
            '%s: options say a %s backbone (data_name %r), but the image state dict has no '
            'cnn.* weights' % (path, opts.cnn_type, opts.data_name))
    fc = sd.get('fc.weight')
    if fc is None or fc.dim() != 2:
        raise NotVSECheckpointError('%s: no fc.weight projection matrix in the image state dict' % path)
    if fc.shape[0] != opts.embed_size:
        raise NotVSECheckpointError('%s: fc.weight has shape %s, but embed_size is %d'
                                    % (path, tuple(fc.shape), opts.embed_size))

    tower = build_tower(opts.cnn_type, opts.embed_size, opts.img_dim, opts.no_imgnorm, opts.use_abs)
    if fc.shape[1] != tower.feature_dim:
        raise NotVSECheckpointError(
            '%s: fc.weight has shape %s, but a %s tower gives %d-d features'
            % (path, tuple(fc.shape), opts.cnn_type or 'precomputed', tower.feature_dim))
    expected = tower.state_dict()
    missing = [k for k in expected if k not in sd and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        raise NotVSECheckpointError(
            '%s does not match a VSE++ %s image tower: %d missing keys (%s), %d unexpected keys (%s)'
            % (path, opts.cnn_type or 'precomputed-feature', len(missing), ', '.join(missing[:5]),
               len(unexpected), ', '.join(unexpected[:5])))
    wrong = [(k, tuple(sd[k].shape), tuple(v.shape)) for k, v in expected.items()
             if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if wrong:
        raise NotVSECheckpointError('%s: tensors of the wrong shape for a %s tower: %s' % (
            path, opts.cnn_type or 'precomputed-feature',
            '; '.join('%s is %s, expected %s' % w for w in wrong[:5])))
    _adopt(tower, sd)
    logger.info('loaded VSE++ image tower from %s (cnn_type=%s, embed_size=%d, no_imgnorm=%s, '
                'use_abs=%s)', path, opts.cnn_type or 'precomputed', opts.embed_size,
                opts.no_imgnorm, opts.use_abs)
    return tower, opts


# --------------------------------------------------------------------------- the text half

@dataclass(frozen=True)
class TextOptions:
    """The training options that shape the text tower (VSE++ ``opt`` fields), as checked
    against the tensors of the checkpoint's text state dict."""

    vocab_size: int
    word_dim: int
    embed_size: int
    num_layers: int
    use_abs: bool = False
    data_name: str = ''


_GRU_PARAMS = ('weight_ih_l%d', 'weight_hh_l%d', 'bias_ih_l%d', 'bias_hh_l%d')


def text_state_dict(ckpt: Mapping, path: PathLike) -> Dict[str, torch.Tensor]:
    """The text encoder's state dict: the second of ``ckpt['model']``, keys as in
    :class:`VSETextTower` (a ``module.`` prefix from a re-save under DataParallel is dropped).
    Raises :class:`NotVSECheckpointError` when the checkpoint has no text half."""
    model = ckpt['model']
    if not isinstance(model, (list, tuple)) or len(model) < 2 or not isinstance(model[1], Mapping) \
            or not any(str(k).endswith('embed.weight') for k in model[1]):
        raise NotVSECheckpointError(
            "%s has no VSE++ text encoder: 'model' should be [image_state_dict, text_state_dict] "
            'with embed.* and rnn.* weights in the second (an image-only checkpoint cannot encode '
            'captions)' % path)
    sd = {}
    for k, v in model[1].items():
        k = str(k)
        if k.startswith('module.'):
            k = k[len('module.'):]
        if not isinstance(v, torch.Tensor):
            raise NotVSECheckpointError('%s: text state dict entry %s is a %s, not a tensor'
                                        % (path, k, type(v).__name__))
        sd[k] = v
    return sd


def read_text_options(ckpt: Mapping, sd: Mapping[str, torch.Tensor], path: PathLike) -> TextOptions:
    """The text tower's shape, from its tensors, checked against the stored options."""
    opt = stored_options(ckpt, path)
    embed = sd.get('embed.weight')
    if embed is None or embed.dim() != 2:
        raise NotVSECheckpointError('%s: the text state dict has no 2-d embed.weight' % path)
    vocab_size, word_dim = map(int, embed.shape)
    num_layers = 0
    while 'rnn.weight_ih_l%d' % num_layers in sd:
        num_layers += 1
    if num_layers == 0:
        raise NotVSECheckpointError('%s: the text state dict has no GRU weights (rnn.weight_ih_l0)' % path)
    w_hh = sd.get('rnn.weight_hh_l0')
    if w_hh is None or w_hh.dim() != 2:
        raise NotVSECheckpointError('%s: the text state dict has no 2-d rnn.weight_hh_l0' % path)
    embed_size = int(w_hh.shape[1])
    found = dict(vocab_size=vocab_size, word_dim=word_dim, embed_size=embed_size, num_layers=num_layers)
    _check_bounds(path, **found)
    for key, value in found.items():
        stored = opt.get(key)
        if stored is not None and int(stored) != value:
            raise NotVSECheckpointError('%s: option %s=%r, but the text weights say %d'
                                        % (path, key, stored, value))
    return TextOptions(vocab_size, word_dim, embed_size, num_layers,
                       use_abs=bool(opt.get('use_abs') or False),
                       data_name=str(opt.get('data_name') or ''))


def load_text_tower(path: PathLike) -> Tuple[VSETextTower, TextOptions]:
    """Build the text tower a checkpoint file describes and load its weights strictly.

    The same file, record check and safe unpickling as :func:`load_tower`. Returns the tower
    in eval mode on the CPU, float32, with gradients off, and its options. Raises a
    :class:`CheckpointError` subclass naming ``path`` and the fault.
    """
    path = Path(path)
    ckpt = read_verified_checkpoint(path)
    stored_options(ckpt, path)
    sd = text_state_dict(ckpt, path)
    opts = read_text_options(ckpt, sd, path)
    tower = build_text_tower(opts.vocab_size, opts.word_dim, opts.embed_size, opts.num_layers, opts.use_abs)
    expected = tower.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        raise NotVSECheckpointError(
            '%s does not match a VSE++ text tower (%d GRU layers): %d missing keys (%s), '
            '%d unexpected keys (%s)' % (path, opts.num_layers, len(missing), ', '.join(missing[:5]),
                                         len(unexpected), ', '.join(unexpected[:5])))
    wrong = [(k, tuple(sd[k].shape), tuple(v.shape)) for k, v in expected.items()
             if tuple(sd[k].shape) != tuple(v.shape)]
    if wrong:
        raise NotVSECheckpointError('%s: text tensors of the wrong shape: %s' % (
            path, '; '.join('%s is %s, expected %s' % w for w in wrong[:5])))
    _adopt(tower, sd)
    if hasattr(tower.rnn, 'flatten_parameters'):
        tower.rnn.flatten_parameters()
    logger.info('loaded VSE++ text tower from %s (vocab_size=%d, word_dim=%d, embed_size=%d, '
                'num_layers=%d, use_abs=%s)', path, opts.vocab_size, opts.word_dim, opts.embed_size,
                opts.num_layers, opts.use_abs)
    return tower, opts
