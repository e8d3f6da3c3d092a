"""The VSE++ image tower in plain torch: backbone -> L2 norm -> linear -> L2 norm -> |.|.
No file reading or jina here; :mod:`vseimageencoder.release.checkpoint` builds and loads it.
"""
import contextlib
import logging
import threading
from typing import Optional, Tuple

import torch
import torchvision.models as tvm
from torch import nn

logger = logging.getLogger(__name__)

#: Backbone families VSE++ knows how to cut (its reference code handles exactly these two).
SUPPORTED_FAMILIES = ('vgg', 'resnet')


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows of ``x`` divided by their L2 norm.

    VSE++ divides by the bare norm; ``eps`` only changes the result for an all-zero row,
    which would otherwise turn into NaNs.
    """
    return x / x.norm(p=2, dim=1, keepdim=True).clamp_min(eps)


def _torchvision_constructor(cnn_type: str):
    ctor = getattr(tvm, cnn_type, None)
    if not callable(ctor) or not cnn_type.startswith(SUPPORTED_FAMILIES):
        known = sorted(n for n in dir(tvm) if n.startswith(SUPPORTED_FAMILIES) and callable(getattr(tvm, n))
                       and n[0].islower() and not n.endswith('_Weights'))
        raise ValueError(
            'unsupported cnn_type %r: VSE++ image towers use a torchvision VGG or ResNet, one of %s'
            % (cnn_type, ', '.join(known)))
    return ctor


#: nn.init functions that layer constructors and torchvision's model __init__ call.
_INIT_FUNCTIONS = ('uniform_', 'normal_', 'trunc_normal_', 'constant_', 'ones_', 'zeros_', 'eye_',
                   'dirac_', 'xavier_uniform_', 'xavier_normal_', 'kaiming_uniform_',
                   'kaiming_normal_', 'orthogonal_', 'sparse_')
_init_lock = threading.Lock()


def _leave_as_is(tensor, *args, **kwargs):
    return tensor


@contextlib.contextmanager
def skip_weight_init():
    """Construct modules without computing their random initial weights.

    The checkpoint carries every weight, so computing random ones only to overwrite them
    would just slow start-up. Parameters are still allocated
    (uninitialised memory, which costs nothing until touched); the caller must then load a
    full state dict. The nn.init functions are swapped out process-wide for the duration,
    so construction is serialised by a lock.
    """
    with _init_lock:
        saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS if hasattr(nn.init, name)}
        try:
            for name in saved:
                setattr(nn.init, name, _leave_as_is)
            yield
        finally:
            for name, fn in saved.items():
                setattr(nn.init, name, fn)


def build_backbone(cnn_type: str) -> Tuple[nn.Module, int]:
    """A torchvision classifier cut as VSE++ cuts it, and the width of its features.

    VGG loses the last classifier Linear (features are the 4096-d output of the second
    ReLU/Dropout); ResNet's ``fc`` becomes an identity (2048-d for resnet50/101/152).
    Weights are left uninitialised: the caller must load a full state dict.
    """
    ctor = _torchvision_constructor(cnn_type)
    try:
        net = ctor(weights=None)
    except TypeError:  # torchvision < 0.13
        net = ctor(pretrained=False)
    if cnn_type.startswith('vgg'):
        layers = list(net.classifier.children())
        feature_dim = layers[-1].in_features
        net.classifier = nn.Sequential(*layers[:-1])
    else:
        feature_dim = net.fc.in_features
        net.fc = nn.Identity()
    return net, feature_dim


class VSEImageTower(nn.Module):
    """VSE++'s image encoder (``EncoderImageFull`` / ``EncoderImagePrecomp`` in the paper's code).

    Input: float32 ``(B, 3, H, W)`` images normalised with ImageNet mean/std when there is
    a backbone, else ``(B, feature_dim)`` precomputed features.
    Output: float32 ``(B, embed_size)``, unit L2 norm per row unless ``no_imgnorm``;
    non-negative when ``use_abs``.
    """

    def __init__(self, backbone: Optional[nn.Module], feature_dim: int, embed_size: int,
                 no_imgnorm: bool = False, use_abs: bool = False):
        super().__init__()
        self.cnn = backbone
        self.fc = nn.Linear(feature_dim, embed_size)
        self.feature_dim = feature_dim
        self.embed_size = embed_size
        self.no_imgnorm = bool(no_imgnorm)
        self.use_abs = bool(use_abs)

    @property
    def precomputed(self) -> bool:
        return self.cnn is None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cnn is not None:
            # The precomputed variant skips this norm: its inputs are used as given.
            x = l2_normalize(self.cnn(x))
        return self.head(x)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Projection and output norms, from (normalised) backbone features."""
        x = self.fc(x)
        if not self.no_imgnorm:
            x = l2_normalize(x)
        if self.use_abs:
            x = torch.abs(x)
        return x


def build_tower(cnn_type: Optional[str], embed_size: int, img_dim: int = 4096,
                no_imgnorm: bool = False, use_abs: bool = False) -> VSEImageTower:
    """An unloaded tower (uninitialised weights); ``cnn_type=None`` builds the
    precomputed-feature variant. Fill it with ``load_state_dict``."""
    with skip_weight_init():
        if cnn_type is None:
            backbone, feature_dim = None, img_dim
        else:
            backbone, feature_dim = build_backbone(cnn_type)
        return VSEImageTower(backbone, feature_dim, embed_size, no_imgnorm, use_abs)
