"""Models. Every one offers ``forward_features``, ``forward_head`` and ``forward``."""

from .feature_classifier import (
    FeatureClassifier,
    FeatureClassifierConfig,
    cifar_resnet18,
)
from .preact_resnet import (
    PreActResNet,
    PreActResNetConfig,
    preact_resnet50,
    preact_small,
)
from .pyramid import EmbeddingNet, PyramidConfig, PyramidTrunk, StraightClassifier
from .small_cnn import SmallCNN, SmallCNNConfig
from .vae import LabellingVAE, VAEConfig, VAEOutput

__all__ = [
    "EmbeddingNet",
    "FeatureClassifier",
    "FeatureClassifierConfig",
    "LabellingVAE",
    "PreActResNet",
    "PreActResNetConfig",
    "PyramidConfig",
    "PyramidTrunk",
    "SmallCNN",
    "SmallCNNConfig",
    "StraightClassifier",
    "VAEConfig",
    "VAEOutput",
    "cifar_resnet18",
    "preact_resnet50",
    "preact_small",
]
