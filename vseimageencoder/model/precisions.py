"""The precisions a tower runs in, by name (no torch import: the command line's choices)."""

#: ``fp32`` (faithful), ``bf16``, ``fp16``, and ``auto`` (picked for the device by
#: :func:`~vseimageencoder.model.inference.resolve_precision`).
PRECISIONS = ('fp32', 'bf16', 'fp16', 'auto')


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else ValueError naming it and them."""
    if precision not in PRECISIONS:
        raise ValueError('precision=%r is not one of %s' % (precision, ', '.join(PRECISIONS)))
    return precision
