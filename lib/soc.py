"""Self-organizing class embeddings (paper 2, Pisoni 2023): every class a Gaussian in feature space.

An image encoder maps an image to a point ``z`` in a small feature space (d dimensions). Class
``k`` is a Gaussian N(mu_k, diag(sigma_k^2)) whose mean is a row of a learned embedding table and
whose scale is fixed at 1 (the paper's choice, "usually more stable") or learned. The class logits
are the Gaussian log-densities of ``z`` under every class, and the loss is the paper's pseudocode:

    img_logits   = log_prob(class_mus, class_scale, img_embs)
    class_logits = log_prob(class_mus, class_scale, class_mus)
    loss = ( CE(y_true, img_logits) + CE(range(n_classes), class_logits) ) / 2

With unit scales the arg-max of the logits is the nearest class mean, and the softmax over them is
that of ``-||z - mu_k||^2 / 2``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_log_prob(z: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor | None = None) -> torch.Tensor:
    """log N(z_b; mu_k, diag(sigma_k^2)) for every point and class: (B, d), (K, d) -> (B, K).

    ``log_scales`` (K, d) are log sigma; None means sigma = 1:

        log N = -1/2 sum_j ((z_j - mu_kj) / sigma_kj)^2 - sum_j log sigma_kj - d/2 log(2 pi)
    """
    diff = z[:, None, :] - means[None, :, :]  # (B, K, d)
    if log_scales is None:
        return -0.5 * diff.pow(2).sum(-1) - 0.5 * z.shape[1] * math.log(2 * math.pi)
    return -0.5 * (diff / log_scales.exp()[None]).pow(2).sum(-1) - log_scales.sum(-1)[None] - 0.5 * z.shape[1] * math.log(2 * math.pi)


class SOCHead(nn.Module):
    """The class Gaussians: a (K, d) table of means and, optionally, learned log-scales."""

    def __init__(self, num_classes: int, num_features: int, learn_scale: bool = False):
        super().__init__()
        self.means = nn.Embedding(num_classes, num_features)  # the paper's class_encoder
        self.log_scales = nn.Parameter(torch.zeros(num_classes, num_features)) if learn_scale else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Image logits (B, K): the log-density of each point under every class, in float32."""
        with torch.autocast(z.device.type, enabled=False):
            return gaussian_log_prob(z.float(), self.means.weight, self.log_scales)

    def class_logits(self) -> torch.Tensor:
        """(K, K): every class mean scored under every class (the regulariser's logits)."""
        return gaussian_log_prob(self.means.weight, self.means.weight, self.log_scales)

    def add_class(self) -> None:
        """Grow the table by one class (mean at the origin, scale 1); the old rows are kept."""
        old = self.means.weight.data
        self.means = nn.Embedding(len(old) + 1, old.shape[1]).to(old.device)
        self.means.weight.data[:-1] = old
        self.means.weight.data[-1] = 0
        if self.log_scales is not None:
            self.log_scales = nn.Parameter(torch.cat([self.log_scales.data, torch.zeros_like(self.log_scales.data[:1])]))


def soc_loss(head: SOCHead, z: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """The paper's loss: the mean of the images' cross-entropy and the class means' self-classification.

    ``label_smoothing`` smooths the images' term only, as it smooths a softmax classifier's
    cross-entropy (0: the paper's loss).
    """
    class_logits = head.class_logits()
    regulariser = F.cross_entropy(class_logits, torch.arange(len(class_logits), device=class_logits.device))
    return (F.cross_entropy(head(z), labels, label_smoothing=label_smoothing) + regulariser) / 2
