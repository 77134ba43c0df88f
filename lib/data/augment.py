"""Augmentation of a whole batch at once, on the batch's device (no per-sample Python).

The standard CIFAR recipe: pad by ``padding`` pixels (zeros), take a random
``H x W`` crop, flip left-right with probability 1/2. One random offset and one
flip per image, drawn from ``generator`` on the CPU so every device sees the same
augmentation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Randomly crop (after zero padding) and flip a batch (B, C, H, W); returns a new tensor."""
    b, _, h, w = x.shape
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # (B, H) source rows
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # (B, W) source columns
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    index = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)  # (B, C, H, W), stored channels-last
