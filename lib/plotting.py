"""The book's figures: image grids, curves with their 95% band over seeds, per-seed points with their
interval, confusion matrices (the statistical ones drawn with seaborn)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
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
    if len(runs) > 1:  # one seed has no interval to shade
        ax.fill_between(x, [c.low for c in cis], [c.high for c in cis], color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def paper_line(ax, value: float, label: str = "paper"):
    ax.axhline(value, color="black", linestyle="--", linewidth=1, label=label)


def feature_space_1d(ax, z: torch.Tensor, labels: torch.Tensor, means: torch.Tensor, names: Sequence[str]):
    """A 1-feature SOC model: each class's unit Gaussian, its points as a strip, the decision regions below."""
    lo, hi = min(float(z.min()), float(means.min())), max(float(z.max()), float(means.max()))  # the points and every mean
    grid = torch.linspace(lo - 1, hi + 1, 800)
    density = torch.exp(-0.5 * (grid[:, None] - means[None, :, 0]) ** 2) / np.sqrt(2 * np.pi)  # (G, K)
    colours = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for k, name in enumerate(names):
        ax.plot(grid, density[:, k], color=colours(k), label=name)
        zk = z[labels == k, 0]
        ax.scatter(zk, -0.05 - 0.25 * torch.rand(len(zk), generator=torch.Generator().manual_seed(k)), s=2, color=colours(k), alpha=0.5)
    region = density.argmax(1)
    ax.scatter(grid, torch.full_like(grid, -0.38), c=[colours(int(k)) for k in region], marker="s", s=12)
    ax.set(xlabel="feature 1", yticks=[], ylim=(-0.45, 0.45))
    return ax


def feature_space_2d(ax, z: torch.Tensor, labels: torch.Tensor, means: torch.Tensor, names: Sequence[str]):
    """A 2-feature SOC model: points, 1- and 2-sigma contours of each class Gaussian, decision regions."""
    both = torch.cat([z, means])  # the regions cover the points and every mean
    lo, hi = both.min(0).values - 1, both.max(0).values + 1
    gx, gy = torch.meshgrid(torch.linspace(float(lo[0]), float(hi[0]), 300), torch.linspace(float(lo[1]), float(hi[1]), 300), indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)
    region = torch.cdist(grid, means).argmin(1).view(gx.shape)  # unit scales: the nearest mean wins
    colours = plt.get_cmap("tab10")
    ax.imshow(region.numpy(), origin="lower", extent=(float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])), cmap=colours,
              vmin=0, vmax=9, alpha=0.18, interpolation="nearest", aspect="auto")
    angle = np.linspace(0, 2 * np.pi, 100)
    for k, name in enumerate(names):
        zk = z[labels == k]
        ax.scatter(zk[:, 0], zk[:, 1], s=3, color=colours(k), alpha=0.6, label=name)
        for r in (1, 2):
            ax.plot(means[k, 0] + r * np.cos(angle), means[k, 1] + r * np.sin(angle), color=colours(k), linewidth=0.8)
    ax.set(xlabel="feature 1", ylabel="feature 2")
    return ax


def feature_space_3d(ax, z: torch.Tensor, labels: torch.Tensor, means: torch.Tensor, names: Sequence[str]):
    """A 3-feature SOC model on a 3-D axis: the points, each class mean (a large marker) and its 1-sigma sphere."""
    colours = plt.get_cmap("tab10")
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 16), np.linspace(0, np.pi, 9))
    for k, name in enumerate(names):
        zk = z[labels == k]
        ax.scatter(zk[:, 0], zk[:, 1], zk[:, 2], s=2, color=colours(k), alpha=0.35)
        m = means[k].numpy()
        ax.scatter(*m, s=80, color=colours(k), edgecolor="black", label=name, depthshade=False)
        ax.plot_wireframe(m[0] + np.cos(u) * np.sin(v), m[1] + np.sin(u) * np.sin(v), m[2] + np.cos(v), color=colours(k), linewidth=0.3, alpha=0.5)
    ax.set(xlabel="feature 1", ylabel="feature 2", zlabel="feature 3")
    return ax


def seed_points(ax, values: dict[str, dict[str, Sequence[float]]], ylabel: str):
    """Every seed's value as a point, and the mean with its 95% t-interval (:func:`lib.evaluation.mean_ci`,
    the interval every verdict uses) as a bar: ``values[group][series]`` is one value per seed."""
    frame = pd.DataFrame([{"group": g, "series": k, "value": v} for g, series in values.items() for k, vs in series.items() for v in vs])
    order, hues = list(values), list(dict.fromkeys(k for series in values.values() for k in series))
    sns.stripplot(frame, x="group", y="value", hue="series", order=order, hue_order=hues, dodge=True, jitter=0.08, size=4, alpha=0.6, ax=ax)
    width = 0.8 / len(hues)
    for j, key in enumerate(hues):
        for i, group in enumerate(order):
            if key in values[group] and len(values[group][key]) > 1:
                ci = mean_ci(values[group][key])
                ax.errorbar(i - 0.4 + width * (j + 0.5), ci.mean, yerr=[[ci.mean - ci.low], [ci.high - ci.mean]], fmt="_", color="black",
                            markersize=12, capsize=3, linewidth=1)
    ax.set(xlabel="", ylabel=ylabel)
    ax.legend(title=None)
    return ax


def confusion(ax, counts: np.ndarray, names: Sequence[str], title: str, annotate: bool = True):
    """A confusion matrix (rows: true class, columns: predicted), shaded by the share of each row and
    annotated with the counts."""
    counts = np.asarray(counts)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    sns.heatmap(share, annot=counts if annotate else False, fmt="d", cmap="Blues", vmin=0, vmax=1, cbar=False, square=True,
                xticklabels=names, yticklabels=names, annot_kws={"fontsize": 7}, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    ax.tick_params(labelsize=7)
    ax.tick_params(axis="y", labelrotation=0)
    ax.tick_params(axis="x", labelrotation=90 if len(names) > 4 else 30)
    return ax
