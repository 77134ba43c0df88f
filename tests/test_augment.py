"""Batch augmentation against a naive per-image loop."""

import torch
import torch.nn.functional as F

from lib.data import random_crop_flip


def test_random_crop_flip_matches_a_per_image_loop():
    x = torch.rand(9, 3, 8, 8)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    out = random_crop_flip(x, 2, g1)
    dy, dx = torch.randint(0, 5, (9,), generator=g2), torch.randint(0, 5, (9,), generator=g2)
    flip = torch.rand(9, generator=g2) < 0.5
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(9):
        crop = padded[i, :, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8]
        torch.testing.assert_close(out[i], crop.flip(-1) if flip[i] else crop)
    assert out.shape == x.shape and flip.any() and not flip.all()


def test_no_padding_keeps_every_pixel():
    x = torch.rand(4, 1, 5, 5)
    out = random_crop_flip(x, 0, torch.Generator().manual_seed(0))
    for i in range(4):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
