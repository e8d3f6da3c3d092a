"""VSE++ training and evaluation: data sets (Karpathy JSON, precomputed features), the loss,
vocabulary building, the training loop and the retrieval protocol.

``contrastive_loss`` and ``train`` need torch and are imported on first use, so the
torch-free parts (:mod:`.data`, :mod:`.metrics`) can be used without it.
"""

__all__ = ['contrastive_loss', 'train', 'default_options', 'evaluate_embeddings', 'build_vocabulary']


def __getattr__(name):
    if name == 'contrastive_loss':
        from vseimageencoder.training.loss import contrastive_loss
        return contrastive_loss
    if name in ('train', 'default_options'):
        from vseimageencoder.training import loop
        return getattr(loop, name)
    if name == 'evaluate_embeddings':
        from vseimageencoder.training.metrics import evaluate_embeddings
        return evaluate_embeddings
    if name == 'build_vocabulary':
        from vseimageencoder.training.vocabulary import build_vocabulary
        return build_vocabulary
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
