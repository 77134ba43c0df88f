"""Each loss against an independent reference: torch.distributions, or a naive loop."""

import math

import torch
from torch.distributions import Normal, kl_divergence

from lib.losses import (
    cosine_triplet_loss,
    kl_to_standard_normal,
    vae_loss,
    weighted_cross_entropy,
)


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    reference = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros(5), torch.ones(5))).sum(1)
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), reference)


def test_kl_is_zero_only_at_the_prior():
    assert kl_to_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() < 1e-7
    assert (kl_to_standard_normal(torch.ones(2, 3), torch.zeros(2, 3)) > 1).all()


def test_vae_loss_is_eq1_computed_by_hand():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 2, 2, generator=g)
    logits = torch.randn(3, 1, 2, 2, generator=g)
    mu, logvar = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
    beta = 5.0
    per_image = []
    for n in range(3):
        bce = 0.0
        for xi, li in zip(x[n].flatten().tolist(), logits[n].flatten().tolist()):
            xhat = 1 / (1 + math.exp(-li))
            bce -= xi * math.log(xhat) + (1 - xi) * math.log(1 - xhat)
        kl = sum(0.5 * (m**2 + math.exp(v) - 1 - v) for m, v in zip(mu[n].tolist(), logvar[n].tolist()))
        per_image.append(bce + beta * kl)
    out = vae_loss(logits, x, mu, logvar, beta)
    assert math.isclose(out.total.item(), sum(per_image) / 3, rel_tol=1e-5)
    assert math.isclose(out.total.item(), (out.reconstruction + beta * out.kl).item(), rel_tol=1e-6)


def test_weighted_cross_entropy_matches_a_naive_loop():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.0, 1.0, 5.0], [0.0, 3.0, 0.0]])
    targets = torch.tensor([0, 2, -1, 1])  # the third image is unlabelled
    weights = torch.tensor([0.9, 0.3, 0.0, 0.5])
    expected = 0.0
    for row, t, w in zip(logits.tolist(), targets.tolist(), weights.tolist()):
        if t < 0:
            continue
        log_softmax = row[t] - math.log(sum(math.exp(v) for v in row))
        expected -= w * log_softmax
    expected /= len(logits)
    assert math.isclose(weighted_cross_entropy(logits, targets, weights).item(), expected, rel_tol=1e-6)


def test_weighted_cross_entropy_ignores_unlabelled_images():
    logits = torch.randn(4, 3)
    a = weighted_cross_entropy(logits, torch.tensor([0, -1, 2, -1]), torch.tensor([1.0, 0.0, 1.0, 0.0]))
    b = weighted_cross_entropy(logits, torch.tensor([0, 1, 2, 0]), torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert torch.equal(a, b)


def test_cosine_triplet_loss_matches_a_naive_loop_over_hand_made_triplets():
    """Eqs. (1)-(3) of paper 1 with the intended sign, one triplet at a time, by hand."""
    e = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.2], [0.5, 0.5], [2.0, 0.1]])
    triplets = [(0, 1, 2), (0, 2, 1), (4, 5, 3), (3, 0, 3), (1, 5, 4)]  # easy, violated, ..., anchor = negative
    k, m = 0.2, 0.1

    def cos(a, b):
        return float(e[a] @ e[b]) / math.sqrt(float(e[a] @ e[a]) * float(e[b] @ e[b]))

    naive = sum(max(k * cos(a, n) - k * cos(a, p) + m, 0.0) for a, p, n in triplets) / len(triplets)
    a, p, n = (torch.tensor(col) for col in zip(*triplets))
    assert math.isclose(float(cosine_triplet_loss(e, a, p, n, margin=m, scale=k)), naive, rel_tol=1e-5)
    # the sign: a positive closer than the negative costs nothing beyond the margin ...
    assert float(cosine_triplet_loss(e, a[:1], p[:1], n[:1], margin=0.0, scale=k)) == 0.0
    # ... and swapping positive and negative costs (the misprinted Eq. (3) would say the opposite)
    assert float(cosine_triplet_loss(e, a[:1], n[:1], p[:1], margin=0.0, scale=k)) > 0.1


def test_cosine_triplet_loss_refuses_a_non_positive_scale():
    import pytest

    with pytest.raises(ValueError, match="scale"):
        cosine_triplet_loss(torch.randn(3, 2), torch.tensor([0]), torch.tensor([1]), torch.tensor([2]), margin=0.1, scale=0.0)
