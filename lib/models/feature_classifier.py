"""An image encoder with a softmax head, a bottlenecked softmax head, or a self-organizing-class (SOC) head (paper 2).

* ``head="softmax"``: one output per class, a linear layer on the encoder's features (the
  cross-entropy baseline; "features" = classes).
* ``head="bottleneck"``: a linear projection to ``num_features`` dimensions, then the linear
  softmax layer: cross-entropy with SOC's output size, the control that separates SOC's loss
  from the size of its feature space.
* ``head="soc"``: a linear projection to ``num_features`` dimensions (the point ``z``), then
  :class:`lib.soc.SOCHead`, the class Gaussians.

Encoders: ``"resnet18"`` is torchvision's ResNet-18 in its CIFAR form (3 x 3 stem with stride 1,
no max pooling; 512 features), the paper's network; ``"small"`` is the book's CPU-sized
:class:`lib.models.SmallCNN` trunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..soc import SOCHead, soc_loss
from .small_cnn import SmallCNN, SmallCNNConfig


@dataclass(frozen=True)
class FeatureClassifierConfig:
    encoder: str = "small"  # "small" or "resnet18" (CIFAR variant)
    width: int = 16  # the small encoder's first width
    in_channels: int = 3
    num_classes: int = 10
    head: str = "soc"  # "soc", "softmax" or "bottleneck"
    num_features: int = 2  # SOC and bottleneck: dimensions of the feature space (ignored by "softmax")
    learn_scale: bool = False  # SOC: learn each class's scale too (the paper keeps it at 1)

    def __post_init__(self):
        if self.encoder not in ("small", "resnet18"):
            raise ValueError(f"encoder {self.encoder!r} must be 'small' or 'resnet18'")
        if self.head not in ("soc", "softmax", "bottleneck"):
            raise ValueError(f"head {self.head!r} must be 'soc', 'softmax' or 'bottleneck'")
        if self.num_classes < 2 or self.num_features < 1 or self.width < 1:
            raise ValueError(f"num_classes must be at least 2, num_features and width at least 1 ({self})")


def cifar_resnet18(in_channels: int = 3) -> tuple[nn.Module, int]:
    """torchvision's ResNet-18 with the CIFAR stem; returns the encoder and its feature size (512)."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net, 512


def small_encoder(in_channels: int, width: int) -> tuple[nn.Module, int]:
    cnn = SmallCNN(SmallCNNConfig(in_channels=in_channels, num_classes=2, width=width))
    return nn.Sequential(cnn.features, cnn.pool, nn.Flatten()), 2 * width * 16


class FeatureClassifier(nn.Module):
    def __init__(self, config: FeatureClassifierConfig):
        super().__init__()
        self.config = config
        if config.encoder == "resnet18":
            self.encoder, dim = cifar_resnet18(config.in_channels)
        else:
            self.encoder, dim = small_encoder(config.in_channels, config.width)
        if config.head == "soc":
            self.project = nn.Linear(dim, config.num_features)
            self.head = SOCHead(config.num_classes, config.num_features, config.learn_scale)
        elif config.head == "bottleneck":
            self.project = nn.Linear(dim, config.num_features)
            self.head = nn.Linear(config.num_features, config.num_classes)
        else:
            self.project = nn.Identity()
            self.head = nn.Linear(dim, config.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, encoder dim)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.project(features))  # (B, num_classes) logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def points(self, x: torch.Tensor) -> torch.Tensor:
        """SOC: the images' points z in feature space, (B, num_features)."""
        return self.project(self.encoder(x))

    def loss(self, x: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """The training loss: the paper's SOC loss, or cross-entropy for the softmax and bottleneck heads;
        ``label_smoothing`` applies to the images' cross-entropy in both."""
        if self.config.head == "soc":
            return soc_loss(self.head, self.points(x), y, label_smoothing)
        return F.cross_entropy(self(x), y, label_smoothing=label_smoothing)
