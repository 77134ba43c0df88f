"""Paper 1's networks: a ResNet v2 whose stages feed a Feature Pyramid Network (Figs. 3 and 4).

:class:`PyramidTrunk` is the convolutional part both networks share: resize (the paper's Keras
``Resizing`` layer, 28 -> 128), the backbone, torchvision's ``FeaturePyramidNetwork`` over every
stage with an extra max-pooled level (five maps, as Fig. 4 draws five branches), and per level
ReLU -> 2 x 2 max pooling -> flatten, concatenated (Fig. 4).

* :class:`StraightClassifier` (Fig. 3, step 1): the trunk and dense layers to the class logits.
* :class:`EmbeddingNet` (Fig. 4, step 2): the *frozen* trunk of a trained straight classifier and
  one dense layer to a 64-d embedding. Only that layer learns, so the trunk's output can be
  computed once per image (:func:`lib.training.predict` on the trunk) and reused.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from .preact_resnet import PreActResNet, preact_resnet50, preact_small

BACKBONES = {"small": preact_small, "resnet50": preact_resnet50}


@dataclass(frozen=True)
class PyramidConfig:
    backbone: str = "small"  # "small" (quick profile) or "resnet50" (the paper's ResNet50V2)
    in_channels: int = 1
    image_size: int = 28  # size of the images given to the network
    input_size: int = 28  # size they are resized to first (paper: 128)
    fpn_channels: int = 16  # channels of every pyramid level (the FPN paper: 256)
    hidden: int = 64  # width of the straight classifier's dense layer (not given in the paper)
    num_classes: int = 3

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone {self.backbone!r} is unknown; choose one of {sorted(BACKBONES)}")
        if min(self.image_size, self.input_size, self.fpn_channels, self.hidden) < 1 or self.num_classes < 2:
            raise ValueError(f"sizes must be positive and num_classes at least 2 ({self})")


class PyramidTrunk(nn.Module):
    """Images (B, C, H, W) in [0, 1] to the concatenated pooled pyramid, (B, feature_dim)."""

    def __init__(self, config: PyramidConfig):
        super().__init__()
        self.config = config
        self.backbone = PreActResNet(BACKBONES[config.backbone](config.in_channels))
        self.fpn = FeaturePyramidNetwork(self.backbone.config.stage_channels, config.fpn_channels, extra_blocks=LastLevelMaxPool())
        self.pool = nn.MaxPool2d(2, ceil_mode=True)  # ceil: a 1 x 1 level stays 1 x 1
        with torch.no_grad():
            self.feature_dim = self.eval()(torch.zeros(1, config.in_channels, config.image_size, config.image_size)).shape[1]
        self.train()

    def pyramid(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        if self.config.input_size != x.shape[-1]:
            x = F.interpolate(x, size=self.config.input_size, mode="bilinear", align_corners=False)
        stages = self.backbone(x)
        return self.fpn(OrderedDict((f"c{i + 2}", s) for i, s in enumerate(stages)))  # p2..p5 and 'pool'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.pyramid(x).values()
        return torch.cat([self.pool(torch.relu(p)).flatten(1) for p in levels], dim=1)  # (B, feature_dim)


class StraightClassifier(nn.Module):
    """Fig. 3: trunk -> Dense(hidden) -> ReLU -> Dense(num_classes) logits."""

    def __init__(self, config: PyramidConfig):
        super().__init__()
        self.config = config
        self.trunk = PyramidTrunk(config)
        self.head = nn.Sequential(nn.Linear(self.trunk.feature_dim, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))  # (B, num_classes)


class EmbeddingNet(nn.Module):
    """Fig. 4: a trained trunk, frozen, and Dense(embedding_dim) on its pooled pyramid."""

    def __init__(self, trunk: PyramidTrunk, embedding_dim: int = 64):
        super().__init__()
        self.trunk = trunk.requires_grad_(False).eval()
        self.head = nn.Linear(trunk.feature_dim, embedding_dim)

    def train(self, mode: bool = True):
        super().train(mode)
        self.trunk.eval()  # frozen means frozen batch-norm statistics too
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.trunk(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)  # (B, embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
