"""The jina 0.9.33 executors under their original path: ``vseimageencoder.executor`` is
:mod:`vseimageencoder.jina09.executor`."""
from vseimageencoder.jina09.executor import VSEImageEncoder, VSETextEncoder  # noqa: F401

__all__ = ['VSEImageEncoder', 'VSETextEncoder']
