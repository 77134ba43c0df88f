"""The benchmarks' one clock: training images per second over a fixed number of steps."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch


def images_per_second(batch_iter: Iterable[tuple[torch.Tensor, ...]], step: Callable, n_steps: int, device: torch.device, warmup: int) -> float:
    """Run ``step(*batch)`` on batches moved to ``device``; images per second over ``n_steps`` after ``warmup`` steps."""
    it = iter(batch_iter)

    def one() -> int:
        batch = tuple(t.to(device, non_blocking=True) for t in next(it))
        step(*batch)
        return len(batch[0])

    for _ in range(warmup):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    seen = sum(one() for _ in range(n_steps))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)
