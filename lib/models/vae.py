"""The variational autoencoder with a classification head of paper 4, §3.3 (its Figure 1).

Encoder: 4 dense layers, the last one linear, giving the mean and log-variance
of ``z``. Decoder: 4 dense layers, sigmoid output. Head: one K-way softmax
layer on ``z``. The paper fixes the third layer at 32 units; the first two
widths are not given, so they are a parameter (``hidden``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn


@dataclass(frozen=True)
class VAEConfig:
    z_dim: int = 10  # latent dimension; §4 picks 10
    hidden: tuple[int, ...] = (512, 128, 32)  # encoder widths, decoder mirrors them; §4: third layer 32
    num_classes: int = 10  # K of the softmax head
    image_shape: tuple[int, int, int] = (1, 28, 28)


class VAEOutput(NamedTuple):
    recon_logits: torch.Tensor  # (B, C, H, W); sigmoid gives the reconstruction x-hat
    mu: torch.Tensor  # (B, z_dim)
    logvar: torch.Tensor  # (B, z_dim)
    z: torch.Tensor  # (B, z_dim), a sample in training, the mean in eval mode
    class_logits: torch.Tensor  # (B, num_classes)


def _mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(w_in, w_out))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class LabellingVAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        n_pixels = int(torch.tensor(config.image_shape).prod())
        widths = [n_pixels, *config.hidden]
        self.encoder = nn.Sequential(_mlp(widths), nn.ReLU())  # 3 layers ...
        self.to_mu = nn.Linear(widths[-1], config.z_dim)  # ... and the 4th, linear (mean)
        self.to_logvar = nn.Linear(widths[-1], config.z_dim)  # (and its log-variance)
        self.decoder = _mlp([config.z_dim, *reversed(widths)])  # 4 layers; sigmoid applied by the loss
        self.head = nn.Linear(config.z_dim, config.num_classes)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x.flatten(1))  # (B, hidden[-1])
        return self.to_mu(h), self.to_logvar(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.config.image_shape)  # (B, C, H, W)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] for latent points ``z`` (the paper's decoded cluster centres)."""
        return torch.sigmoid(self.decode_logits(z))

    # timm-style interface shared by every model of the book
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu  # reparameterisation
        return VAEOutput(self.decode_logits(z), mu, logvar, z, self.head(z))
