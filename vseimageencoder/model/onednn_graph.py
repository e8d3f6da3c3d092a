"""A CPU backbone compiled with oneDNN Graph fusion (pure torch, no jina).

Eager torch runs each layer of a ResNet block as its own kernel: a convolution writes its
output, then the ReLU and the residual add read it back and write it again. oneDNN Graph
compiles a traced, frozen backbone into partitions that apply the ReLU and the add inside
the convolution, so activations cross memory once per layer instead of up to three times,
and the Python dispatch of some 500 modules per pass goes away. On a CPU with AMX,
ResNet-152 in bf16 ran 1.6-2.5x as fast as eager, and ``encode`` 1.2x on 12 MP and 1.5x on
1 MP photos (docs/speed.md, "The fused tower").

TorchScript's profiling executor specialises the fused graph to the batch shape it saw
while warming up; batches of other sizes run an unfused graph that computes what eager
does. Start-up costs a trace at batch 1, a freeze, two passes at the batch size and one
eager pass to check the result (a few seconds for ResNet-152 in bf16 on 2 cores), which is
why by default only bulk jobs in reduced precision fuse
(:data:`~vseimageencoder.pipeline.embed_files.FUSE_MIN_IMAGES`), and ``serve``, which pays once at
start for every photo query after (:class:`~vseimageencoder.serve.SearchService`). In fp32
the fuser seems to leave the arithmetic as eager's (bit-identical features in an ad hoc
check), the gain is smaller (1.1-1.5x) and each pass costs five times as much.

TorchScript is deprecated upstream (torch 2.14 warns on trace and freeze; 2.8 does not). Where it
is missing or a step fails, :func:`fuse_backbone` logs why and the caller keeps the eager
backbone: fusion only ever changes speed.
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
            # Recent torch deprecates these calls; the module docstring says what happens
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
