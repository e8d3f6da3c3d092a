"""VSE++ image embeddings for jina 0.9.x (Faghri et al., "VSE++: Improving Visual-Semantic
Embeddings with Hard Negatives", BMVC 2018).

``from vseimageencoder import VSEImageEncoder`` gives the jina executor; the model,
checkpoint and preprocessing modules import no jina and can be used on their own.
"""
from ._version import __version__

__all__ = ['VSEImageEncoder', '__version__']


def __getattr__(name):
    # Lazy, so that the jina-free modules can be imported without importing jina.
    if name == 'VSEImageEncoder':
        from .executor import VSEImageEncoder
        return VSEImageEncoder
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
