"""The jina 0.9.33 executors :class:`VSEImageEncoder` and :class:`VSETextEncoder`, thin layers
over :mod:`vseimageencoder.encoders`; importing this module registers their YAML tags.
"""
import sys
import threading
from typing import Optional

import numpy as np

from vseimageencoder.jina09.offline import jina09_installed, require_jina09

if 'jina' not in sys.modules and threading.current_thread() is not threading.main_thread() \
        and jina09_installed():
    # jina 0.9's package installs a signal handler, which only the main thread may do; its own
    # error (ValueError: signal only works in main thread) would not say what to change.
    raise ImportError('vseimageencoder.jina09.executor would be the first import of jina 0.9.33, on a '
                      'thread other than the main one, where jina cannot be imported (it installs a '
                      'signal handler); import vseimageencoder.jina09.executor (or jina) on the main thread '
                      'first', name='jina')

require_jina09()  # before jina's own imports: a clear error on Python 3.10+ or with jina 3

from jina.executors.decorators import batching  # noqa: E402
from jina.executors.encoders.frameworks import BaseTorchEncoder  # noqa: E402

from vseimageencoder.images.checks import normalize_channel_axis  # noqa: E402
from vseimageencoder.images.transform import DEFAULT_RESIZE, check_resize  # noqa: E402
from vseimageencoder.model.precisions import check_precision  # noqa: E402


class _VSEExecutor(BaseTorchEncoder):
    """What both towers' executors share: the deprecated ``path`` name and complete metas."""

    def _model_path(self, model_path: str, path: Optional[str]) -> str:
        # ``path`` is the hub 0.0.x name, kept so old YAMLs still load.
        if path is not None:
            self.logger.warning('"path" is deprecated, use "model_path"; using %s' % path)
            return path
        return model_path

    def _post_init_wrapper(self, _metas=None, _requests=None, fill_in_metas=True):
        # jina 0.9.33 fills default metas only when none are given, so
        # VSEImageEncoder(metas={'batch_size': 8}) would lack on_gpu and fail later with a
        # bare AttributeError. Defaults go under whatever the caller gave.
        if _metas and fill_in_metas:
            from jina.executors.metas import get_default_metas
            _metas = {**get_default_metas(), **_metas}
        super()._post_init_wrapper(_metas, _requests, fill_in_metas)

    def _checked_device(self):
        """``self.device`` (cuda:0 with metas ``on_gpu``, else cpu), or a
        :class:`~vseimageencoder.model.inference.DeviceUnavailableError` that names the meta."""
        from vseimageencoder.model.inference import DeviceUnavailableError, check_device
        try:
            return check_device(self.device)
        except DeviceUnavailableError as e:
            raise DeviceUnavailableError('%s (metas on_gpu=%s; on_gpu: False runs on the CPU)'
                                         % (e, self.on_gpu)) from None

    def _use(self, core) -> None:
        """Serve with ``core`` (an ``ImageEncoder`` or ``TextEncoder``, already on the device)."""
        self.core = core
        self.checkpoint_path = core.checkpoint_path
        self.options = core.options
        self.model = core.model
        self.logger.info(core.describe())

    @property
    def embed_size(self) -> int:
        """Width of the embeddings :meth:`encode` returns."""
        return self.core.embed_size

    def _empty(self) -> 'np.ndarray':
        return np.zeros((0, self.embed_size), dtype=np.float32)

    @batching
    def _encode_batches(self, batch) -> 'np.ndarray':
        # Per jina batch (metas batch_size), so memory follows batch_size, not the request.
        return self.core.encode_checked(batch)


class VSEImageEncoder(_VSEExecutor):
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
    :param resize: how uint8 pixel batches are resized: ``fast`` (default; one batched
        antialiased bilinear resize, within one grey level of PIL's) or ``exact`` (the
        faithful PIL transform, image by image on parallel threads).
    :param fuse: with metas ``batch_size`` set, compile a CPU tower with oneDNN Graph fusion
        for batches of that size when the pod starts (costs seconds once, then runs faster,
        docs/speed.md); other batch sizes run unfused
        with the same results. None (default): when ``precision`` resolves to ``bf16`` or
        ``fp16``; True: fp32 too; False: never.

    jina's metas apply as usual: ``batch_size`` splits :meth:`encode` calls into batches,
    ``on_gpu`` runs the model on ``cuda:0``.
    """

    def __init__(self, model_path: str = 'pretrained', channel_axis: int = 1,
                 precision: str = 'fp32', path: Optional[str] = None,
                 pool_strategy: Optional[str] = None, resize: str = DEFAULT_RESIZE,
                 fuse: Optional[bool] = None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # ``pool_strategy`` (hub 0.0.x) never applied: the tower's output is already a vector.
        self.model_path = self._model_path(model_path, path)
        self.channel_axis = normalize_channel_axis(channel_axis)
        self.precision = check_precision(precision)
        self.resize = check_resize(resize)
        from vseimageencoder.encoders import check_fuse
        self.fuse = check_fuse(fuse)

    def post_init(self):
        super().post_init()
        from vseimageencoder.encoders import DEFAULT_SEARCH_DIRS, ImageEncoder

        # Moves itself to self.device once, so jina's to_device is not needed.
        self._use(ImageEncoder(self.model_path, self.channel_axis, self.precision, self._checked_device(),
                               search_dirs=DEFAULT_SEARCH_DIRS, resize=self.resize))
        # Executors saved before ``fuse`` existed unpickle without it: auto.
        fuse = getattr(self, 'fuse', None)
        if self.batch_size and self.core.fuse(int(self.batch_size), fuse):
            self.logger.info('the image tower runs fused for batches of %d (oneDNN Graph)' % self.batch_size)

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
        return self._encode_batches(batch) if len(batch) else self._empty()


class VSETextEncoder(_VSEExecutor):
    """Encode captions into VSE++ joint-space embeddings, the companion of
    :class:`VSEImageEncoder` (same checkpoints: their second state dict is the text tower).

    :param model_path: a VSE++ checkpoint or a folder holding ``model_best.pth.tar``,
        resolved as for :class:`VSEImageEncoder`.
    :param vocab_path: the vocabulary pickle (``<data_name>_vocab.pkl`` from the release's
        ``vocab.tar``) or a folder holding it; None: beside the checkpoint, where
        ``vseimageencoder download`` puts it. Relative paths resolve as ``model_path`` does.
    :param precision: arithmetic of the embedding table and GRU: ``fp32`` (faithful),
        ``bf16``, ``fp16`` or ``auto``; outputs are float32 and L2-normalised either way.
    :param path: deprecated hub 0.0.x name of ``model_path``.

    jina's metas apply as for :class:`VSEImageEncoder`.
    """

    def __init__(self, model_path: str = 'pretrained', vocab_path: Optional[str] = None,
                 precision: str = 'fp32', path: Optional[str] = None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_path = self._model_path(model_path, path)
        self.vocab_path = vocab_path
        self.precision = check_precision(precision)

    def post_init(self):
        super().post_init()
        from vseimageencoder.encoders import DEFAULT_SEARCH_DIRS, TextEncoder

        self._use(TextEncoder(self.model_path, self.vocab_path, self.precision, self._checked_device(),
                              search_dirs=DEFAULT_SEARCH_DIRS))

    def encode(self, data, *args, **kwargs) -> 'np.ndarray':
        """Embed a batch of captions.

        :param data: a 1-d array or list of str (what jina's EncodeDriver hands over for
            text Documents); ``''`` encodes as the start and end tokens only.
        :return: float32 ``(B, embed_size)``, each row of unit L2 norm; a caption gives the
            same row alone or in any batch.
        """
        captions = self.core.check(data)
        return self._encode_batches(captions) if captions else self._empty()
