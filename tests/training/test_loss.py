"""vseimageencoder.training.contrastive_loss against the formula written out pair by pair."""
import pytest
import torch

from vseimageencoder.training import contrastive_loss


def _batch(b=6, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    im = torch.nn.functional.normalize(torch.randn(b, d, generator=g), dim=1)
    s = torch.nn.functional.normalize(im + 0.8 * torch.randn(b, d, generator=g), dim=1)
    return im, s


def direct(im, s, margin, max_violation):
    """Sum over positive pairs (i, i): hinge against each wrong caption j for image i and
    each wrong image j for caption i; the hardest only, or all."""
    b = im.shape[0]
    total = 0.0
    for i in range(b):
        pos = float(im[i] @ s[i])
        wrong_caps = [max(0.0, margin + float(im[i] @ s[j]) - pos) for j in range(b) if j != i]
        wrong_ims = [max(0.0, margin + float(im[j] @ s[i]) - pos) for j in range(b) if j != i]
        if max_violation:
            total += max(wrong_caps) + max(wrong_ims)
        else:
            total += sum(wrong_caps) + sum(wrong_ims)
    return total


@pytest.mark.parametrize('max_violation', [True, False])
@pytest.mark.parametrize('margin', [0.2, 0.5])
def test_loss_matches_the_formula(max_violation, margin):
    im, s = _batch(seed=int(margin * 10))
    got = contrastive_loss(im, s, margin=margin, max_violation=max_violation)
    assert got.dim() == 0
    assert float(got) == pytest.approx(direct(im, s, margin, max_violation), rel=1e-5, abs=1e-6)
    assert float(got) > 0


def test_defaults_are_vsepp_hardest_negatives_margin_02():
    im, s = _batch(seed=5)
    assert float(contrastive_loss(im, s)) == pytest.approx(direct(im, s, 0.2, True), rel=1e-5)
    # The hardest-negative loss is at most the all-negatives one.
    assert float(contrastive_loss(im, s)) <= float(contrastive_loss(im, s, max_violation=False))


def test_summed_not_averaged():
    im, s = _batch(b=4, seed=2)
    doubled = contrastive_loss(torch.cat([im, im]), torch.cat([s, s]), max_violation=False)
    # Twice the pairs, each with twice the negatives (plus the copies of itself): far above
    # the 4-pair loss, which an average would keep near it.
    assert float(doubled) > 3 * float(contrastive_loss(im, s, max_violation=False))


def test_perfect_separation_costs_nothing_and_gradients_flow():
    assert float(contrastive_loss(torch.eye(4), torch.eye(4))) == 0.0
    im, s = _batch(seed=3)
    im.requires_grad_(True)
    contrastive_loss(im, s).backward()
    assert torch.isfinite(im.grad).all() and im.grad.abs().sum() > 0


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r'\(4, 3\) and \(5, 3\)'):
        contrastive_loss(torch.zeros(4, 3), torch.zeros(5, 3))
