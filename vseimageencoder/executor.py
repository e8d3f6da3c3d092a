"""The jina 0.9.33 front end: :class:`VSEImageEncoder`, a thin executor around the tower."""
from typing import Optional

import numpy as np

from ._jina09 import require_jina09

require_jina09()  # before jina's own imports: a clear error on Python 3.10+ or with jina 3

from jina.executors.decorators import batching  # noqa: E402
from jina.executors.encoders.frameworks import BaseTorchEncoder  # noqa: E402

from .encoders import DEFAULT_SEARCH_DIRS, ImageEncoder, check_precision
from .preprocess import normalize_channel_axis


class VSEImageEncoder(BaseTorchEncoder):
    """Encode images into VSE++ joint-space embeddings (Faghri et al., BMVC 2018).

    :param model_path: a VSE++ checkpoint (``model_best.pth.tar`` as released) or a folder
        holding one. A relative path is looked up in the working directory first, then in the
        folder that holds the ``vseimageencoder`` package (the repository root, where
        ``config.yml`` lives).
    :param channel_axis: the axis of the 3 colour channels in the image batches given to
        :meth:`encode` (1 for ``(B, 3, H, W)``, -1 or 3 for ``(B, H, W, 3)``).
    :param precision: the backbone's arithmetic: ``fp32`` (faithful, default), ``bf16``,
        ``fp16``, or ``auto`` (fp16 on CUDA, bf16 on CPUs with bf16 hardware, else fp32).
        Outputs are float32 and L2-normalised whatever the choice.

    jina's metas apply as usual: ``batch_size`` splits :meth:`encode` calls into batches,
    ``on_gpu`` runs the model on ``cuda:0``.
    """

    def __init__(self, model_path: str = 'pretrained', channel_axis: int = 1,
                 precision: str = 'fp32', path: Optional[str] = None,
                 pool_strategy: Optional[str] = None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # ``path`` and ``pool_strategy`` are the hub 0.0.x names, kept so old YAMLs still load:
        # ``path`` is model_path; pooling never applied (the tower's output is already a vector).
        if path is not None:
            self.logger.warning('"path" is deprecated, use "model_path"; using %s' % path)
            model_path = path
        self.model_path = model_path
        self.channel_axis = normalize_channel_axis(channel_axis)
        self.precision = check_precision(precision)

    def _post_init_wrapper(self, _metas=None, _requests=None, fill_in_metas=True):
        # jina 0.9.33 fills default metas only when none are given, so
        # VSEImageEncoder(metas={'batch_size': 8}) would lack on_gpu and fail later with a
        # bare AttributeError. Defaults go under whatever the caller gave.
        if _metas and fill_in_metas:
            from jina.executors.metas import get_default_metas
            _metas = {**get_default_metas(), **_metas}
        super()._post_init_wrapper(_metas, _requests, fill_in_metas)

    def post_init(self):
        super().post_init()
        # Moves itself to self.device once, so jina's to_device is not needed.
        self.core = ImageEncoder(self.model_path, self.channel_axis, self.precision, self.device,
                                 search_dirs=DEFAULT_SEARCH_DIRS)
        self.checkpoint_path = self.core.checkpoint_path
        self.options = self.core.options
        self.model = self.core.model
        self.logger.info(self.core.describe())

    @property
    def embed_size(self) -> int:
        """Width of the embeddings :meth:`encode` returns."""
        return self.options.embed_size

    def encode(self, data: 'np.ndarray', *args, **kwargs) -> 'np.ndarray':
        """Embed a batch of images.

        :param data: a 4-d batch with the 3 colour channels at ``channel_axis``, either
            - uint8 raw RGB pixels of any size: the VSE++ evaluation transform (short side
              256, centre crop 224, ImageNet mean/std) is applied here; or
            - float images already so transformed and normalised, any spatial size the
              backbone accepts (used as given).
            For ``*_precomp`` checkpoints, ``(B, img_dim)`` CNN features instead.
        :return: float32 ``(B, embed_size)``, each row of unit L2 norm (unless the checkpoint
            was trained with ``no_imgnorm``); ``(0, embed_size)`` for an empty batch.
        """
        batch = self.core.check(data)
        if batch.shape[0] == 0:
            return np.zeros((0, self.embed_size), dtype=np.float32)
        return self._encode_batches(batch)

    @batching
    def _encode_batches(self, batch: 'np.ndarray') -> 'np.ndarray':
        # Raw pixels are transformed per jina batch, so memory follows batch_size rather
        # than the request size.
        return self.core.encode_checked(batch)
