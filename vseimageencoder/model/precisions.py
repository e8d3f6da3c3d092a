"""The precisions a tower runs in, by name (no torch import: the command line's choices)."""

#: ``fp32`` (faithful), ``bf16``, ``fp16``, and ``auto`` (picked for the device by
#: :func:`~vseimageencoder.model.inference.resolve_precision`).
PRECISIONS = ('fp32', 'bf16', 'fp16', 'auto')
