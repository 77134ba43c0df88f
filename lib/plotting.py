"""The book's figures: image grids and curves with their 95% band over seeds."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .evaluation import mean_ci


def image_grid(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 10, title: str = "", scale: float = 1.1):
    """Show (N, C, H, W) images, uint8 or float in [0, 1], in a grid with optional per-image titles."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows * (1.25 if titles else 1)), squeeze=False)
    imgs = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = imgs[i].permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy()
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            if titles:
                ax.set_title(titles[i], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def band(ax, x: Sequence[float], runs: Sequence[Sequence[float]], label: str, **style):
    """Mean over seeds (``runs[s][i]`` is seed s at x[i]) with its 95% interval as a shaded band."""
    cis = [mean_ci([r[i] for r in runs]) for i in range(len(x))]
    mean = [c.mean for c in cis]
    line = ax.plot(x, mean, marker="o", label=f"{label} (n={len(runs)})", **style)[0]
    ax.fill_between(x, [c.low for c in cis], [c.high for c in cis], color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def paper_line(ax, value: float, label: str = "paper"):
    ax.axhline(value, color="black", linestyle="--", linewidth=1, label=label)
