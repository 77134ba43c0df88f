"""Pre-activation ("v2") residual networks (He, Zhang, Ren, Sun 2016, *Identity Mappings in Deep
Residual Networks*), returning the output of every stage for a feature pyramid.

In a v2 block batch norm and ReLU come *before* each convolution and the shortcut adds the
raw sum, so a stage's output is not normalised; the last stage is followed by one final batch
norm + ReLU (Keras' ``post_bn``/``post_relu`` in ``ResNet50V2``). torchvision has only the v1.5
network, so the book builds v2 here.

``preact_resnet50()`` is the paper-scale network (bottleneck blocks 3-4-6-3, widths
64-128-256-512, expansion 4, 7 x 7 stem with max pooling). ``preact_small()`` is the book's
CPU-sized one (basic blocks, a 3 x 3 stem, no stem pooling, so 28 x 28 images keep their
resolution). The stride sits in the first block of stages 2-4, as in He et al.; Keras puts it
in the last block of stages 1-3, which shifts every map one stage earlier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PreActResNetConfig:
    in_channels: int = 1
    block: str = "basic"  # "basic" (two 3x3 convs) or "bottleneck" (1x1, 3x3, 1x1 with expansion 4)
    depths: tuple[int, ...] = (1, 1, 1, 1)  # blocks per stage
    widths: tuple[int, ...] = (16, 32, 64, 128)  # channels per stage (before expansion)
    stem: str = "small"  # "small": 3x3 conv, stride 1; "imagenet": 7x7 conv, stride 2, then 3x3 max pool

    def __post_init__(self):
        if self.block not in ("basic", "bottleneck"):
            raise ValueError(f"block {self.block!r} must be 'basic' or 'bottleneck'")
        if self.stem not in ("small", "imagenet"):
            raise ValueError(f"stem {self.stem!r} must be 'small' or 'imagenet'")
        if len(self.depths) != len(self.widths) or not self.depths or min(self.depths) < 1:
            raise ValueError(f"depths {self.depths} and widths {self.widths} need one positive entry per stage")

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1

    @property
    def stage_channels(self) -> list[int]:
        return [w * self.expansion for w in self.widths]


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus the shortcut."""

    def __init__(self, c_in: int, width: int, stride: int, expansion: int = 1):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(width), nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.shortcut = None if stride == 1 and c_in == width else nn.Conv2d(c_in, width, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))  # the shortcut projection also sees the pre-activated input (He et al. 2016b)
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + skip


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3 (stride), BN-ReLU-conv1x1 to ``4 * width``, plus the shortcut."""

    def __init__(self, c_in: int, width: int, stride: int, expansion: int = 4):
        super().__init__()
        c_out = width * expansion
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, width, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(width), nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(width), nn.Conv2d(width, c_out, 1, bias=False)
        self.shortcut = None if stride == 1 and c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(torch.relu(self.bn2(out)))
        out = self.conv3(torch.relu(self.bn3(out)))
        return out + skip


class PreActResNet(nn.Module):
    """The stem and the residual stages; ``forward`` returns every stage's output, shallow to deep."""

    def __init__(self, config: PreActResNetConfig):
        super().__init__()
        self.config = config
        w0 = config.widths[0]
        if config.stem == "imagenet":
            self.stem = nn.Sequential(nn.Conv2d(config.in_channels, 64, 7, 2, 3, bias=False), nn.MaxPool2d(3, 2, 1))
            c = 64
        else:
            self.stem = nn.Conv2d(config.in_channels, w0, 3, 1, 1, bias=False)
            c = w0
        Block = PreActBottleneck if config.block == "bottleneck" else PreActBlock
        stages = []
        for i, (depth, width) in enumerate(zip(config.depths, config.widths)):
            blocks = []
            for j in range(depth):
                blocks.append(Block(c, width, stride=2 if (i > 0 and j == 0) else 1, expansion=config.expansion))
                c = width * config.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.post = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())  # Keras' post_bn + post_relu after the last stage
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        outputs[-1] = self.post(outputs[-1])
        return outputs  # [(B, c_i, H_i, W_i)], one per stage


def preact_resnet50(in_channels: int = 1) -> PreActResNetConfig:
    """ResNet-50 v2: the paper's backbone (Keras ``ResNet50V2``), 23.5 M parameters for 3 channels."""
    return PreActResNetConfig(in_channels, "bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), "imagenet")


def preact_small(in_channels: int = 1) -> PreActResNetConfig:
    """The quick profile's backbone: one basic block per stage, widths 8-16-32-64, native resolution."""
    return PreActResNetConfig(in_channels, "basic", (1, 1, 1, 1), (8, 16, 32, 64), "small")
