"""Mini-batches from tensors already in memory on the training device.

For MNIST-scale data the whole training set fits on the device as one uint8
tensor; a batch is an index into it (airbench-style). There is no
``Dataset.__getitem__`` per sample and no worker process, which on a small
model is several times faster than a ``DataLoader`` (see
``benchmarks/batching.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] to float in [0, 1] (the paper's §3.2 normalisation)."""
    return images.float().div_(255)


def batches(
    images: torch.Tensor,
    *tensors: torch.Tensor,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield ``(images[i], *[t[i] for t in tensors])`` for consecutive index blocks ``i``.

    ``images`` (uint8) come back as float in [0, 1]; the other tensors as they are.
    With ``shuffle`` the order is a permutation drawn from ``generator`` (on the CPU, so it
    is the same on every device).
    """
    n = len(images)
    if any(len(t) != n for t in tensors):
        raise ValueError("all tensors must have as many rows as images")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(images.device)
    for start in range(0, n, batch_size):
        i = order[start : start + batch_size]
        yield (to_unit(images[i]), *(t[i] for t in tensors))
