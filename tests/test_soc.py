"""Paper 2's class Gaussians against torch.distributions, and its loss against the pseudocode by hand."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import MultivariateNormal, Normal

from lib.soc import SOCHead, gaussian_log_prob, soc_loss


def test_unit_scale_log_prob_matches_normal_and_multivariate_normal():
    g = torch.Generator().manual_seed(0)
    z, means = torch.randn(6, 3, generator=g), torch.randn(4, 3, generator=g)
    ours = gaussian_log_prob(z, means)
    normal = torch.stack([Normal(m, torch.ones(3)).log_prob(z).sum(1) for m in means], 1)
    mvn = torch.stack([MultivariateNormal(m, torch.eye(3)).log_prob(z) for m in means], 1)
    torch.testing.assert_close(ours, normal)
    torch.testing.assert_close(ours, mvn)


def test_learned_scale_log_prob_matches_diagonal_normal():
    g = torch.Generator().manual_seed(1)
    z, means, log_scales = torch.randn(5, 2, generator=g), torch.randn(3, 2, generator=g), 0.5 * torch.randn(3, 2, generator=g)
    ours = gaussian_log_prob(z, means, log_scales)
    mvn = torch.stack([MultivariateNormal(m, torch.diag(s.exp() ** 2)).log_prob(z) for m, s in zip(means, log_scales)], 1)
    torch.testing.assert_close(ours, mvn)


def test_soc_loss_is_the_papers_pseudocode():
    torch.manual_seed(0)
    head = SOCHead(num_classes=4, num_features=2)
    z, y = torch.randn(7, 2), torch.tensor([0, 1, 2, 3, 0, 1, 2])
    mus = head.means.weight
    img_logits = torch.stack([Normal(m, torch.ones(2)).log_prob(z).sum(1) for m in mus], 1)
    class_logits = torch.stack([Normal(m, torch.ones(2)).log_prob(mus).sum(1) for m in mus], 1)
    by_hand = (F.cross_entropy(img_logits, y) + F.cross_entropy(class_logits, torch.arange(4))) / 2
    torch.testing.assert_close(soc_loss(head, z, y), by_hand)


def test_unit_scale_logits_pick_the_nearest_mean():
    head = SOCHead(3, 2)
    z = torch.randn(20, 2)
    assert torch.equal(head(z).argmax(1), torch.cdist(z, head.means.weight).argmin(1))


def test_both_scale_options_learn_separable_points():
    for learn_scale in (False, True):
        torch.manual_seed(0)
        y = torch.arange(3).repeat_interleave(50)
        x = torch.randn(150, 6) + 4 * torch.randn(3, 6)[y]
        proj, head = torch.nn.Linear(6, 2), SOCHead(3, 2, learn_scale=learn_scale)
        opt = torch.optim.Adam([*proj.parameters(), *head.parameters()], 1e-2)
        for _ in range(300):
            loss = soc_loss(head, proj(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert (head(proj(x)).argmax(1) == y).float().mean() > 0.95, f"learn_scale={learn_scale}"
        if learn_scale:
            assert head.log_scales.grad is not None and head.log_scales.detach().abs().max() > 0


def test_add_class_keeps_the_old_means():
    head = SOCHead(3, 2, learn_scale=True)
    old = head.means.weight.detach().clone()
    head.add_class()
    assert head.means.weight.shape == (4, 2) and torch.equal(head.means.weight[:3], old)
    assert head.log_scales.shape == (4, 2) and math.isclose(float(head.log_scales.detach()[3].abs().sum()), 0.0)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_label_smoothing_smooths_the_images_term_and_never_the_regulariser(smoothing):
    """soc_loss against a reference from torch.distributions: the images' term with label smoothing
    (1 - e) * -log p_y + e * mean_k -log p_k, the class means' self-classification without it."""

    torch.manual_seed(0)
    head = SOCHead(3, 2)
    z, y = torch.randn(5, 2), torch.tensor([0, 1, 2, 1, 0])
    means = head.means.weight.detach()

    def log_softmax_of_densities(points):
        dens = torch.stack([MultivariateNormal(m, torch.eye(2)).log_prob(points) for m in means], dim=1)
        return dens.log_softmax(1)

    logp = log_softmax_of_densities(z)
    images = ((1 - smoothing) * -logp[torch.arange(5), y] + smoothing * -logp.mean(1)).mean()
    regulariser = -log_softmax_of_densities(means).diagonal().mean()
    torch.testing.assert_close(soc_loss(head, z, y, label_smoothing=smoothing), (images + regulariser) / 2)


def test_an_added_class_starts_at_the_origin():
    head = SOCHead(3, 4)
    head.add_class()
    assert head.means.weight.shape == (4, 4) and torch.equal(head.means.weight[3], torch.zeros(4))
