"""Seeds, devices, checkpoints that survive an interruption, and a plain classifier loop.

The trainer knows nothing about any paper: it fits a model that maps images to
logits with cross-entropy. Method-specific loops (chapter 4's VAE) live with
their method and reuse :class:`Checkpoint`.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .data import Split, batches

LIB_DIR = Path(__file__).resolve().parent


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; return a CPU generator for data order."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    """``'auto'`` is CUDA when available, else the CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available; use 'auto' or 'cpu'")
    return device


def code_digest() -> str:
    """SHA-256 over the library's source: a checkpoint made by other code is never resumed."""
    h = hashlib.sha256()
    for path in sorted(LIB_DIR.rglob("*.py")):
        h.update(path.relative_to(LIB_DIR).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


class Checkpoint:
    """One file per run, rewritten atomically after every epoch.

    The file name carries a digest of the run's settings and of the library's code, so a
    run with the same settings resumes where it stopped and any other run starts afresh.
    """

    def __init__(self, directory: str | Path | None, name: str, settings: dict):
        key = json.dumps({"settings": settings, "code": code_digest()}, sort_keys=True, default=str)
        self.path = None if directory is None else Path(directory) / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.pt"

    def load(self) -> dict | None:
        if self.path is None or not self.path.is_file():
            return None
        try:
            return torch.load(self.path, weights_only=False)
        except Exception as err:  # a half-written or damaged file: start over, loudly
            print(f"checkpoint {self.path} is unreadable ({err}); starting this run from scratch")
            return None

    def save(self, state: dict) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.path)


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits for uint8 ``images`` (moved to the model's device batch by batch), shape (N, K)."""
    model.eval()
    device = next(model.parameters()).device
    out = [model(x.to(device)) for (x,) in batches(images, batch_size=batch_size, shuffle=False)]
    return torch.cat(out).float().cpu()


def fit_classifier(
    model: nn.Module,
    train: Split,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device,
    desc: str = "training",
) -> list[float]:
    """Adam + cross-entropy on in-memory batches; returns the mean loss of every epoch."""
    generator = seed_everything(seed)
    model.to(device).train()
    images, labels = train.images.to(device), train.labels.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    losses = []
    for _ in tqdm(range(epochs), desc=desc, leave=False):
        total, n = 0.0, 0
        for x, y in batches(images, labels, batch_size=batch_size, shuffle=True, generator=generator):
            loss = F.cross_entropy(model(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total, n = total + loss.item() * len(y), n + len(y)
        losses.append(total / n)
    model.eval()
    return losses
