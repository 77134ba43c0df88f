"""Losses, each with the equation it implements.

Conventions: per-image terms are summed over pixels / latent dimensions and
averaged over the batch, as in the paper's equations (which are per image).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ) per image, shape (B,).

    Closed form: 1/2 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


class VAELoss(NamedTuple):
    total: torch.Tensor  # scalar, mean over the batch
    reconstruction: torch.Tensor  # scalar, mean over the batch of the per-image pixel sum
    kl: torch.Tensor  # scalar, mean over the batch


def vae_loss(recon_logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float) -> VAELoss:
    """Paper 4, Eq. (1):

        L_VAE = - sum_ij ( x_ij ln x^_ij + (1 - x_ij) ln(1 - x^_ij) ) + beta * KLD( q(z|x), N(0, I) )

    with x^ = sigmoid(recon_logits); the logits form is the same function, computed stably.
    """
    reconstruction = F.binary_cross_entropy_with_logits(recon_logits, x, reduction="none").flatten(1).sum(1)
    kl = kl_to_standard_normal(mu, logvar)
    return VAELoss((reconstruction + beta * kl).mean(), reconstruction.mean(), kl.mean())


def weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Paper 4, the classification term of Eq. (3), averaged over the batch:

        - (1/B) sum_n w_n sum_k y_nk ln y^_nk

    ``targets`` are class indices; an image without a label has weight 0 (its target is ignored,
    and may be -1).
    """
    ce = F.cross_entropy(logits, targets.clamp(min=0), reduction="none")  # (B,)
    return (weights * ce).mean()


def cosine_triplet_loss(
    embeddings: torch.Tensor, anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, margin: float, scale: float
) -> torch.Tensor:
    """Paper 1, Eqs. (1)-(3), with the sign of Eq. (3) as intended, averaged over the triplets:

        P = k cos(e_a, e_p),  N = k cos(e_a, e_n)        (1), (2)
        loss = max(N - P + m, 0)                         (3), printed as max(P - N + m, 0)

    As printed, Eq. (3) would push an anchor *away* from its positive: for similarities (higher
    = closer) the positive must beat the negative by the margin. ``anchors``, ``positives`` and
    ``negatives`` index rows of ``embeddings``. Computed with pytorch-metric-learning's
    ``TripletMarginLoss`` on cosine similarity, using max(kN - kP + m, 0) = k max(N - P + m/k, 0),
    and every triplet counted in the mean (its default averages only the non-zero ones).
    """
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.reducers import MeanReducer

    if scale <= 0:
        raise ValueError(f"scale k={scale} must be positive")
    loss = TripletMarginLoss(margin=margin / scale, distance=CosineSimilarity(), reducer=MeanReducer())
    return scale * loss(embeddings, indices_tuple=(anchors, positives, negatives))


def two_level_loss(super_logits: torch.Tensor, sub_logits: torch.Tensor, y_super: torch.Tensor, y_sub: torch.Tensor, *,
                   super_weights: torch.Tensor | None = None, sub_weights: torch.Tensor | None = None,
                   level_weights: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """Paper 3's losses over the super-class and the sub-class head.

    With class weights (ResNet-50), each level is Eq. (1), the class-weighted cross-entropy
    ``-(1/N) sum_i w_{y_i} log softmax(s_i)_{y_i}`` (:func:`weighted_cross_entropy` with
    ``w_n = w_{y_n}``), and the levels are summed, Eq. (2): ``L = L_super + L_sub``.
    Without them (ConvNeXt), Eqs. (3)-(5): ``L = w_super L_super + w_sub L_sub`` of unweighted
    cross-entropies, ``level_weights = (w_super, w_sub)``. A flat model has no super-class
    logits (None): only its sub-class term counts.
    """
    def level(logits, y, class_weights):
        return F.cross_entropy(logits, y) if class_weights is None else weighted_cross_entropy(logits, y, class_weights[y])

    loss = level_weights[1] * level(sub_logits, y_sub, sub_weights)
    if super_logits is not None:
        loss = loss + level_weights[0] * level(super_logits, y_super, super_weights)
    return loss
