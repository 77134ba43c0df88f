"""Seeded, stratified splits and class subsets.

Every function takes an explicit ``seed`` and returns index tensors, so the
same seed always picks the same images whatever else the run does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .loaders import Split


def stratified_split(labels: torch.Tensor, sizes: Sequence[int], seed: int) -> list[torch.Tensor]:
    """Cut ``range(len(labels))`` into disjoint parts of the given sizes, each with the class mix of the whole.

    ``sizes`` may sum to less than ``len(labels)``; the rest is returned as a last part.
    Per class, part ``i`` takes ``round(size_i * n_c / n)`` images (largest remainders fixed up so the
    sizes are exact).
    """
    y = labels.numpy()
    n = len(y)
    sizes = list(sizes)
    if any(s < 0 for s in sizes) or sum(sizes) > n:
        raise ValueError(f"split sizes {sizes} must be non-negative and sum to at most {n} images")
    if sum(sizes) < n:
        sizes.append(n - sum(sizes))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    # quota[i, c]: images of class c in part i, exact in both margins
    quota = np.zeros((len(sizes), len(classes)), dtype=int)
    for i, s in enumerate(sizes[:-1]):
        ideal = s * counts / n
        q = np.floor(ideal).astype(int)
        for c in np.argsort(-(ideal - q))[: s - q.sum()]:
            q[c] += 1
        quota[i] = q
    quota[-1] = counts - quota[:-1].sum(0)
    if (quota[-1] < 0).any():
        raise ValueError("split sizes leave a class with a negative remainder; use fewer or smaller parts")
    parts: list[list[np.ndarray]] = [[] for _ in sizes]
    for c_i, c in enumerate(classes):
        members = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for i in range(len(sizes)):
            parts[i].append(members[start : start + quota[i, c_i]])
            start += quota[i, c_i]
    return [torch.from_numpy(np.sort(np.concatenate(p))).long() for p in parts]


def per_class_subset(labels: torch.Tensor, n_per_class: int, seed: int) -> torch.Tensor:
    """Indices of ``n_per_class`` random images of every class (all of a class if it has fewer)."""
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    picked = [rng.permutation(np.flatnonzero(y == c))[:n_per_class] for c in np.unique(y)]
    return torch.from_numpy(np.sort(np.concatenate(picked))).long()


def select_classes(split: Split, classes: Sequence[int]) -> Split:
    """The images of ``classes`` only, relabelled ``0..len(classes)-1`` in the order given.

    Chapters that add a class later call this twice: ``select_classes(s, [0, 1, 2])`` now,
    ``select_classes(s, [0, 1, 2, 3])`` later, so old labels keep their numbers.
    """
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes {classes} repeat a class; give each class once")
    present = set(split.labels.unique().tolist())
    unknown = [c for c in classes if c not in present]
    if unknown:
        raise ValueError(f"classes {unknown} do not occur in this split (labels present: {sorted(present)})")
    lookup = torch.full((int(split.labels.max()) + 1,), -1, dtype=torch.int64)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    keep = lookup[split.labels] >= 0
    return Split(split.images[keep], lookup[split.labels[keep]])


def take(split: Split, index: torch.Tensor) -> Split:
    return Split(split.images[index], split.labels[index])
