"""VSE++'s hinge-based triplet loss over a batch of matching image-caption pairs."""
import torch


def contrastive_loss(im: torch.Tensor, s: torch.Tensor, margin: float = 0.2,
                     max_violation: bool = True) -> torch.Tensor:
    """The VSE++ (``max_violation=True``) or VSE0 (``False``) loss of a batch.

    :param im: ``(B, D)`` image embeddings, row ``i`` matching caption ``i``; L2-normalised
        (the score of a pair is their dot product, the cosine).
    :param s: ``(B, D)`` caption embeddings, same dtype and device as ``im``.
    :param margin: the hinge margin alpha.
    :param max_violation: True: for each positive pair, only the hardest negative caption
        (for the image) and the hardest negative image (for the caption) count, as VSE++
        trains; False: every negative counts (VSE0's sum of hinges).
    :return: a scalar tensor, summed over the batch (not averaged), as VSE++ sums it.

    With ``S = im @ s.T``, the caption cost of pair ``(i, j)``, ``j != i``, is
    ``max(0, margin + S[i, j] - S[i, i])`` and the image cost is
    ``max(0, margin + S[i, j] - S[j, j])``.
    """
    if im.dim() != 2 or s.dim() != 2 or im.shape != s.shape:
        raise ValueError('contrastive_loss needs two (B, D) tensors of the same shape, got %s and %s'
                         % (tuple(im.shape), tuple(s.shape)))
    scores = im @ s.t()
    diagonal = scores.diagonal().view(-1, 1)
    # Row i holds image i against every caption: its wrong captions are compared with S[i, i];
    # column j holds caption j against every image: its wrong images are compared with S[j, j].
    cost_s = (margin + scores - diagonal).clamp(min=0)
    cost_im = (margin + scores - diagonal.t()).clamp(min=0)
    positives = torch.eye(scores.size(0), dtype=torch.bool, device=scores.device)
    cost_s = cost_s.masked_fill(positives, 0)
    cost_im = cost_im.masked_fill(positives, 0)
    if max_violation:
        return cost_s.max(dim=1)[0].sum() + cost_im.max(dim=0)[0].sum()
    return cost_s.sum() + cost_im.sum()
