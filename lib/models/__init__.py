"""Models. Every one offers ``forward_features``, ``forward_head`` and ``forward``."""

from .small_cnn import SmallCNN, SmallCNNConfig
from .vae import LabellingVAE, VAEConfig, VAEOutput

__all__ = ["LabellingVAE", "SmallCNN", "SmallCNNConfig", "VAEConfig", "VAEOutput"]
