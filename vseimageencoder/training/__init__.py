"""VSE++ training and evaluation: data sets, the loss, vocabulary building, the training loop
and the retrieval protocol (torch is imported only by ``contrastive_loss`` and ``train``).
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
