"""A CPU backbone compiled with oneDNN Graph fusion (pure torch, no jina); fusion only ever
changes speed, and :func:`fuse_backbone` falls back to the eager backbone when it cannot fuse.
"""
import logging
import warnings
from typing import Optional

import torch
from torch import nn

logger = logging.getLogger(__name__)

#: Passes at the batch shape after freezing: TorchScript profiles the shapes on the first
#: (computing what eager does) and compiles and runs the fused graph from the second on, so
#: the last pass's features are the fused graph's, which are checked against eager.
WARMUP_PASSES = 2

#: A fused backbone whose features on the warm-up batch fall below this cosine to the eager
#: backbone's is not used (bf16 kernels that differ in summation order stay above 0.9999).
MIN_COSINE = 0.999


def fusion_available() -> bool:
    """True where this torch has TorchScript tracing and the oneDNN Graph fuser."""
    return all(hasattr(torch.jit, name) for name in ('trace', 'freeze', 'enable_onednn_fusion')) \
        and hasattr(torch._C, '_jit_llga_enabled')


def fuse_backbone(cnn: nn.Module, example: torch.Tensor) -> Optional[torch.jit.ScriptModule]:
    """``cnn`` traced, frozen and compiled with oneDNN Graph fusion for batches shaped like
    ``example``, or None (with a logged warning) where that cannot be done or the fused
    features disagree with the eager ones.

    Eager torch runs each layer of a ResNet block as its own kernel, writing the
    convolution's output and reading it back for the ReLU and the residual add; the fused
    partitions apply those inside the convolution and drop the per-module Python dispatch.
    TorchScript specialises the fused graph to the batch shape seen while warming up;
    other batch sizes run an unfused graph that computes what eager does. Because start-up
    costs a trace, a freeze and several passes, by default only bulk jobs in reduced
    precision (:data:`~vseimageencoder.pipeline.embed_files.FUSE_MIN_IMAGES`) and ``serve``
    (:class:`~vseimageencoder.serve.SearchService`) fuse. TorchScript is deprecated upstream;
    where it is missing or a step fails, the reason is logged and None returned.

    :param cnn: an eval-mode backbone on the CPU, already in its inference dtype and memory
        format (:class:`~vseimageencoder.model.inference.InferenceTower` prepares it).
    :param example: a batch as the backbone will get them, ``(B, 3, H, W)`` in the backbone's
        dtype and memory format; its values only need to be finite.
    :return: a module with ``cnn``'s contract (same input, features within cosine
        :data:`MIN_COSINE` of ``cnn``'s), fastest at batch size ``B``. The oneDNN fusion flag,
        a global of torch, is restored to what it was on return.
    """
    if not fusion_available():
        logger.warning('torch %s has no TorchScript oneDNN fuser; the backbone runs unfused',
                       torch.__version__)
        return None
    was_enabled = torch._C._jit_llga_enabled()
    try:
        with warnings.catch_warnings():
            # Recent torch deprecates these calls; fuse_backbone's docstring says what happens
            # when they go away, so the warning would only repeat it at every start-up.
            warnings.filterwarnings('ignore', message=r'.*torch\.jit\.\w+` is deprecated')
            torch.jit.enable_onednn_fusion(True)
            with torch.no_grad():
                frozen = torch.jit.freeze(torch.jit.trace(cnn, example[:1], check_trace=False).eval())
            with torch.inference_mode():
                for _ in range(WARMUP_PASSES):
                    fused = frozen(example)
                eager = cnn(example)
    except Exception as e:  # TorchScript refuses some modules; eager still works
        logger.warning('could not fuse the %s backbone (%s: %s); it runs unfused',
                       type(cnn).__name__, type(e).__name__, str(e).splitlines()[0] if str(e) else '')
        return None
    finally:
        torch.jit.enable_onednn_fusion(was_enabled)
    cos = float(nn.functional.cosine_similarity(fused.float().flatten(1), eager.float().flatten(1)).min())
    if not cos >= MIN_COSINE:
        logger.warning('the fused %s backbone disagrees with the eager one (cosine %.6f < %s on the '
                       'warm-up batch); it runs unfused', type(cnn).__name__, cos, MIN_COSINE)
        return None
    logger.debug('fused the %s backbone for batches of %d (warm-up cosine to eager %.6f)',
                 type(cnn).__name__, example.shape[0], cos)
    return frozen
