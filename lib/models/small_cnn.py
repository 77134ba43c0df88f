"""A small convolutional classifier: the book's CPU-sized image model.

Chapter 4 uses it as the simulated annotator (a digit recogniser trained on
images the VAE never sees). Two conv blocks, average pooling to a 4 x 4
grid, a linear head on the flattened grid; batch norm so it trains in a few
epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class SmallCNNConfig:
    in_channels: int = 1
    num_classes: int = 10
    width: int = 32  # channels of the first block; the second has twice as many


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class SmallCNN(nn.Module):
    def __init__(self, config: SmallCNNConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.features = nn.Sequential(_block(config.in_channels, w), _block(w, 2 * w))
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Linear(2 * w * 16, config.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)  # (B, 2w * 16)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))  # (B, num_classes) logits
