"""A loaded :class:`VSEImageTower` prepared for fast inference on one device: same outputs,
less time (pure torch, no jina).
"""
import logging
from typing import Optional, Union

import torch
from torch import nn

from vseimageencoder.model.image import VSEImageTower, l2_normalize
from vseimageencoder.model.precisions import PRECISIONS, check_precision  # noqa: F401  (PRECISIONS: also read from here)

logger = logging.getLogger(__name__)

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def _cpu_flags() -> set:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with bf16 matrix hardware (AMX or AVX512-BF16), where oneDNN runs bf16
    convolutions natively; elsewhere torch emulates them, several times slower than fp32."""
    for probe in ('_is_amx_tile_supported', '_is_avx512_bf16_supported'):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None:
            try:
                if fn():
                    return True
            except Exception:  # a private probe that changed: fall back to the flags
                pass
    return bool(_cpu_flags() & {'amx_bf16', 'avx512_bf16'})


def cpu_has_fast_fp16() -> bool:
    """True on CPUs with native fp16 matrix support (AMX-FP16 or AVX512-FP16)."""
    fn = getattr(torch.cpu, '_is_amx_fp16_supported', None)
    if fn is not None:
        try:
            if fn():
                return True
        except Exception:
            pass
    return bool(_cpu_flags() & {'amx_fp16', 'avx512_fp16'})


def resolve_precision(precision: str, device: Union[str, torch.device] = 'cpu') -> str:
    """``fp32``/``bf16``/``fp16`` as given; ``auto`` picks fp16 on CUDA, bf16 on CPUs with bf16
    hardware, else fp32. Raises ValueError naming an unknown precision."""
    check_precision(precision)
    device = torch.device(device)
    if precision != 'auto':
        if device.type == 'cpu' and precision in ('bf16', 'fp16'):
            fast = cpu_has_fast_bf16() if precision == 'bf16' else cpu_has_fast_fp16()
            if not fast:
                logger.warning('precision=%s on a CPU without %s hardware is emulated and slower '
                               'than fp32', precision, precision)
        return precision
    if device.type == 'cuda':
        return 'fp16'
    return 'bf16' if cpu_has_fast_bf16() else 'fp32'


class DeviceUnavailableError(ValueError):
    """The torch device asked for is not a device name, or is not on this machine."""


def available_devices() -> list:
    """The devices torch can run on here: ``cpu``, then ``cuda:0``... and ``mps`` if present."""
    found = ['cpu']
    if torch.cuda.is_available():
        found += ['cuda:%d' % i for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, 'mps', None)
    if mps is not None and mps.is_available():
        found.append('mps')
    return found


def check_device(device: Union[str, torch.device]) -> torch.device:
    """``device`` as a :class:`torch.device`, checked before anything is loaded onto it.

    Every front end passes the user's device through here, so that a device the machine
    lacks is one line naming it and what is available (:class:`DeviceUnavailableError`)
    rather than a traceback from deep inside torch at the first copy.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceUnavailableError('device=%r is not a torch device name; available here: %s'
                                     % (str(device), ', '.join(available_devices()))) from None
    here = available_devices()
    if dev.type == 'cpu':
        return dev
    if dev.type == 'cuda':
        if not torch.cuda.is_available():
            why = ('this torch is built without CUDA' if torch.version.cuda is None
                   else 'no CUDA GPU or driver is usable on this machine')
            raise DeviceUnavailableError('device=%r is not available: %s; available here: %s'
                                         % (str(device), why, ', '.join(here)))
        index = 0 if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise DeviceUnavailableError('device=%r is not available: this machine has %d CUDA '
                                         'device(s); available here: %s'
                                         % (str(device), torch.cuda.device_count(), ', '.join(here)))
        return dev
    if dev.type == 'mps' and 'mps' in here:
        return dev
    raise DeviceUnavailableError('device=%r is not available; available here: %s'
                                 % (str(device), ', '.join(here)))


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode batch norm into the convolution that feeds it (in place)."""
    with torch.no_grad():
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
        b = conv.bias.double() if conv.bias is not None else torch.zeros_like(bn.running_mean, dtype=torch.float64)
        b = (b - bn.running_mean.double()) * scale + bn.bias.double()
        conv.weight = nn.Parameter(w.to(conv.weight.dtype), requires_grad=False)
        conv.bias = nn.Parameter(b.to(conv.weight.dtype), requires_grad=False)


def fold_batchnorms(module: nn.Module) -> int:
    """Fold every batch norm that directly follows a convolution, in torchvision's ResNet
    (``convN``/``bnN`` siblings, ``downsample`` pairs) and VGG-BN (``Sequential`` runs)
    layouts, replacing it by an identity. Returns the number folded."""
    folded = 0
    for parent in list(module.modules()):
        children = dict(parent.named_children())
        for name, child in children.items():
            if not isinstance(child, nn.BatchNorm2d) or not child.track_running_stats:
                continue
            conv = None
            if name.startswith('bn'):
                conv = children.get('conv' + name[2:])
            elif name.isdigit():
                conv = children.get(str(int(name) - 1))
            if isinstance(conv, nn.Conv2d) and conv.out_channels == child.num_features:
                _fold(conv, child)
                setattr(parent, name, nn.Identity())
                folded += 1
    return folded


class InferenceTower(nn.Module):
    """A loaded tower prepared for fast inference on one device.

    Without changing what the tower computes: batch norms are folded into the convolutions
    before them, activations are channels-last (the layout oneDNN and cuDNN convolutions
    prefer), the backbone may run in reduced precision, and on CUDA inputs go through pinned
    host memory with non-blocking copies. The projection head always runs in float32.

    Input: float32 ``(B, 3, H, W)`` normalised images (or ``(B, img_dim)`` features for
    precomputed-feature towers), on any device. Output: float32 ``(B, embed_size)`` on the
    CPU, L2-normalised unless the checkpoint says ``no_imgnorm``.
    """

    def __init__(self, tower: VSEImageTower, precision: str = 'fp32',
                 device: Union[str, torch.device] = 'cpu', channels_last: bool = True,
                 fold_bn: bool = True):
        super().__init__()
        self.device = check_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.dtype = DTYPES[self.precision]
        self.channels_last = channels_last and tower.cnn is not None
        self.embed_size = tower.embed_size
        self.tower = tower.eval()
        if tower.cnn is not None:
            if fold_bn:
                n = fold_batchnorms(tower.cnn)
                logger.debug('folded %d batch norms', n)
            tower.cnn.to(self.device, dtype=self.dtype)
            if self.channels_last:
                tower.cnn.to(memory_format=torch.channels_last)
        tower.fc.to(self.device, dtype=torch.float32)
        tower.requires_grad_(False)
        # Not a registered submodule: state_dict and .to() see the eager tower only.
        object.__setattr__(self, '_fused', None)
        self.fused_batch_size: Optional[int] = None

    def fuse(self, batch_size: int) -> bool:
        """Compile the backbone with oneDNN Graph fusion (:mod:`vseimageencoder.model.onednn_graph`),
        fastest for batches of ``batch_size``; batches of other sizes still run, unfused.
        CPU backbones only; compiling costs seconds, once. Returns whether the tower now runs fused
        (False on CUDA, for precomputed features, or when fusion failed; all but the second
        logged). Call it before sharing the tower between threads."""
        if self.device.type != 'cpu':
            logger.warning('oneDNN Graph fusion is for CPU towers; the tower on %s runs unfused',
                           self.device)
            return False
        if self.tower.cnn is None or batch_size < 1:
            return False
        if self.fused_batch_size == batch_size:
            return True
        from vseimageencoder.model.onednn_graph import fuse_backbone
        from vseimageencoder.images.checks import CHANNELS
        from vseimageencoder.images.transform import CROP

        g = torch.Generator().manual_seed(0)
        example = torch.randn(batch_size, CHANNELS, CROP, CROP, generator=g).to(self.dtype)
        if self.channels_last:
            example = example.contiguous(memory_format=torch.channels_last)
        fused = fuse_backbone(self.tower.cnn, example)
        if fused is not None:
            object.__setattr__(self, '_fused', fused)
            self.fused_batch_size = batch_size
        return fused is not None

    @property
    def fuses_by_default(self) -> bool:
        """Whether callers fuse without being asked (``fuse`` None): a CPU backbone in
        ``bf16`` or ``fp16``; fp32 gains less and takes longer to compile."""
        return self.device.type == 'cpu' and self.tower.cnn is not None and self.precision in ('bf16', 'fp16')

    @property
    def precomputed(self) -> bool:
        return self.tower.cnn is None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cuda = self.device.type == 'cuda'
        if cuda and x.device.type == 'cpu' and not x.is_pinned():
            x = x.pin_memory()
        with torch.inference_mode():
            if self.tower.cnn is not None:
                x = x.to(self.device, dtype=self.dtype, non_blocking=cuda)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                cnn = self._fused if self._fused is not None else self.tower.cnn
                feats = cnn(x).float()
                if self.precision == 'fp16' and not bool(torch.isfinite(feats).all()):
                    # fp16 tops out at 65504; a backbone whose activations grow past it gives
                    # inf/NaN features, which must not pass as embeddings.
                    raise ValueError('precision=fp16 overflowed in the %s backbone (non-finite '
                                     'features); use bf16 or fp32' % type(self.tower.cnn).__name__)
                x = l2_normalize(feats)
            else:
                x = x.to(self.device, dtype=torch.float32, non_blocking=cuda)
            return self.tower.head(x).cpu()
