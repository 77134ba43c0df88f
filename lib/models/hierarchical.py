"""Paper 3's networks: a torchvision backbone without its classifier, and two heads (super-class, sub-class).

* ``"resnet50"``: torchvision's ResNet-50, ``fc`` removed (2048 features). Each head is the paper's
  Linear(2048 -> 512) -> ReLU -> Dropout -> Linear(512 -> classes).
* ``"convnext_tiny"``: torchvision's ConvNeXt-Tiny, its last linear layer removed (its LayerNorm and
  flatten kept; 768 features). Each head is Linear -> ReLU -> Linear, the paper's "fully connected
  layer with ReLU activation, leading to a softmax output layer" (no dropout mentioned).
* ``"resnet_mini"`` and ``"convnext_mini"``: the same families scaled down for the CPU (torchvision's
  ``Bottleneck`` and ``ConvNeXt`` with one block per stage and a quarter of the widths), for the
  quick and cpu profiles. Both have a small-input stem of stride 2 (the ResNet a 3 x 3 convolution
  without max pooling, the ConvNeXt a 2 x 2 patchify layer), so both downsample their input 16-fold
  (a 64 px image ends as a 4 x 4 map), as their full-size siblings both downsample 32-fold.

The sub-class head has one output more than there are training sub-classes: the paper's slot for
the novel sub-class. ``heads="flat"`` builds a single sub-class head (the flat baseline, whose
super-class is read off its sub-class).

``weights`` is torchvision's ``weights=`` argument (``"DEFAULT"`` downloads the ImageNet weights
when online); the mini backbones have none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BACKBONES = ("resnet50", "convnext_tiny", "resnet_mini", "convnext_mini")
FAMILY = {"resnet50": "ResNet", "resnet_mini": "ResNet", "convnext_tiny": "ConvNeXt", "convnext_mini": "ConvNeXt"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class HierarchicalConfig:
    backbone: str = "resnet_mini"
    num_super: int = 3
    num_sub: int = 16  # outputs of the sub-class head: the training sub-classes plus the novel slot
    hidden: int = 512  # the heads' hidden width (paper: 512)
    dropout: float = 0.5  # ResNet heads only (paper: "dropout", rate not given)
    heads: str = "two"  # "two" (the paper) or "flat" (sub-class head only)
    input_size: int = 0  # images are resized to this, batch by batch on their device (0: as they come)
    head_family: str = ""  # whose heads: "" the backbone's own family's; "ResNet" (with dropout) or "ConvNeXt" (without)

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone {self.backbone!r} is unknown; choose one of {list(BACKBONES)}")
        if self.heads not in ("two", "flat"):
            raise ValueError(f"heads {self.heads!r} must be 'two' or 'flat'")
        if self.head_family not in ("", "ResNet", "ConvNeXt"):
            raise ValueError(f"head_family {self.head_family!r} must be '', 'ResNet' or 'ConvNeXt'")
        if self.num_super < 2 or self.num_sub < 2 or self.hidden < 1 or not 0 <= self.dropout < 1 or self.input_size < 0:
            raise ValueError(f"need num_super, num_sub >= 2, hidden >= 1 and 0 <= dropout < 1 ({self})")


def backbone(name: str, weights: str | None = None) -> tuple[nn.Module, int]:
    """A torchvision backbone without its classifier, and its feature size."""
    from torchvision.models import convnext_tiny, resnet50

    if weights is not None and name.endswith("_mini"):
        raise ValueError(f"{name} has no pretrained weights; use resnet50 or convnext_tiny for weights={weights!r}")
    if name == "resnet50":
        net = resnet50(weights=weights)
    elif name == "resnet_mini":
        return resnet_mini(), 512
    elif name == "convnext_tiny":
        net = convnext_tiny(weights=weights)
    else:
        net = convnext_mini()
    if FAMILY[name] == "ResNet":
        dim = net.fc.in_features
        net.fc = nn.Identity()
    else:
        dim = net.classifier[-1].in_features
        net.classifier[-1] = nn.Identity()
    return net, dim


def resnet_mini() -> nn.Sequential:
    """ResNet-50's family at a CPU's scale: torchvision's ``Bottleneck`` blocks, one per stage, a quarter
    of the widths (outputs 64, 128, 256, 512), and a 3 x 3 stem of stride 2 without max pooling for
    small inputs."""
    from torchvision.models.resnet import Bottleneck, conv1x1

    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)]
    inplanes = 16
    for planes, stride in ((16, 1), (32, 2), (64, 2), (128, 2)):
        out = planes * Bottleneck.expansion
        down = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
        layers.append(Bottleneck(inplanes, planes, stride, down))
        inplanes = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def convnext_mini() -> nn.Module:
    """ConvNeXt's family at a CPU's scale: torchvision's ``ConvNeXt``, one block per stage, a quarter of
    ConvNeXt-Tiny's widths (24, 48, 96, 192), and a 2 x 2 patchify stem of stride 2 (ConvNeXt-Tiny's is
    4 x 4, stride 4) for small inputs: the same 16-fold downsampling as :func:`resnet_mini`."""
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    net = ConvNeXt([CNBlockConfig(24, 48, 1), CNBlockConfig(48, 96, 1), CNBlockConfig(96, 192, 1), CNBlockConfig(192, None, 1)])
    stem = nn.Conv2d(3, 24, kernel_size=2, stride=2)
    nn.init.trunc_normal_(stem.weight, std=0.02)  # torchvision's ConvNeXt initialisation
    nn.init.zeros_(stem.bias)
    net.features[0][0] = stem  # (B, 3, H, W) -> (B, 24, H/2, W/2), then its LayerNorm
    return net


def head(family: str, dim: int, hidden: int, dropout: float, outputs: int) -> nn.Sequential:
    if family == "ResNet":
        return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, outputs))
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


class HierarchicalNet(nn.Module):
    """Backbone, then a super-class head and a sub-class head; ``forward`` returns both logits."""

    def __init__(self, config: HierarchicalConfig, weights: str | None = None):
        super().__init__()
        self.config = config
        self.backbone, dim = backbone(config.backbone, weights)
        family = config.head_family or FAMILY[config.backbone]
        self.super_head = head(family, dim, config.hidden, config.dropout, config.num_super) if config.heads == "two" else None
        self.sub_head = head(family, dim, config.hidden, config.dropout, config.num_sub)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255, persistent=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images as floats in [0, 1] (what :func:`lib.data.batches` gives) to backbone features.

        The images are resized to ``config.input_size`` here, on their device, batch by batch: the
        data stay at their own size in memory (a dataset resized to 224 px would not fit).
        """
        size = self.config.input_size
        if size and x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=x.shape[-1] > size, align_corners=False)
        return self.backbone((x * 255 - self.mean) / self.std)  # torchvision's ImageNet normalisation

    def forward_head(self, features: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        return (self.super_head(features) if self.super_head is not None else None), self.sub_head(features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(super-class logits or None for the flat model, sub-class logits)."""
        return self.forward_head(self.forward_features(x))
