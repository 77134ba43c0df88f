"""Seeds, devices, checkpoints that survive an interruption, and a plain classifier loop.

The trainer knows nothing about any paper: it fits a model that maps images to
logits with cross-entropy. Method-specific loops (chapter 4's VAE) live with
their method and reuse :class:`Checkpoint`.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

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
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1024, *, amp: bool = False, channels_last: bool = False,
            to_cpu: bool = True) -> torch.Tensor:
    """``model``'s float outputs for uint8 ``images`` (moved to its device batch by batch), (N, ...).

    Logits of a classifier, or features of a trunk; on the CPU, or left on the model's device with
    ``to_cpu=False``. ``amp`` and ``channels_last`` as in :func:`fit_classifier`.
    """
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device  # a model without parameters runs on the CPU
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    out = []
    for (x,) in batches(images, batch_size=batch_size, shuffle=False):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            out.append(model(x.to(device).contiguous(memory_format=memory_format)).float())
    out = torch.cat(out)
    return out.cpu() if to_cpu else out


OPTIMISERS = ("adam", "nadam", "sgd")
SCHEDULES = ("constant", "onecycle")


def make_optimiser(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam (fused), NAdam, or SGD with Nesterov momentum 0.9 (the usual CIFAR recipe)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    if name == "nadam":
        return torch.optim.NAdam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    raise ValueError(f"optimiser {name!r} is unknown; choose one of {list(OPTIMISERS)}")


def parameter_groups(model: nn.Module, lr: float, lr_scales: dict[str, float]) -> list[dict]:
    """The optimiser's parameter groups: one at ``lr``, and one per ``lr_scales`` key at ``lr * scale``."""
    named = list(model.named_parameters())
    for prefix, scale in lr_scales.items():
        if scale <= 0:
            raise ValueError(f"lr_scales[{prefix!r}] = {scale} must be positive")
        if not any(name.startswith(prefix) for name, _ in named):
            raise ValueError(f"lr_scales key {prefix!r} names no parameter of {type(model).__name__}; its parameters start with "
                             f"{sorted({name.split('.')[0] for name, _ in named})}")
    groups = {prefix: [] for prefix in [None, *lr_scales]}
    for name, param in named:
        groups[next((prefix for prefix in lr_scales if name.startswith(prefix)), None)].append(param)
    return [{"params": params, "lr": lr * (lr_scales[prefix] if prefix else 1.0)} for prefix, params in groups.items() if params]


class FitReport(NamedTuple):
    losses: list[float]  # mean training loss of every epoch
    seconds: float  # training wall time, summed over resumed sessions
    images_per_s: float  # training images per second of wall time
    resumed: bool  # whether the run continued from a checkpoint


def fit_classifier(
    model: nn.Module,
    train: Split,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device,
    optimiser: str = "adam",
    weight_decay: float = 0.0,
    schedule: str = "constant",
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    amp: bool = False,
    channels_last: bool = False,
    checkpoint: Checkpoint | None = None,
    desc: str = "training",
    lr_scales: dict[str, float] | None = None,
) -> FitReport:
    """Train on in-memory batches; checkpointed after every epoch.

    The loss is cross-entropy on ``model(x)`` unless ``loss_fn(model, x, y)`` is given.
    ``schedule="onecycle"`` ramps the learning rate up to ``lr`` and anneals it (Smith's one-cycle);
    ``augment(x, generator)`` transforms every batch on its device (see
    :func:`lib.data.random_crop_flip`).

    ``amp`` runs the forward pass in bfloat16 autocast on CUDA (ignored on the CPU, where it is
    slower); ``channels_last`` stores images and weights in NHWC, which tensor cores prefer.
    ``lr_scales`` multiplies the learning rate of the parameters whose names start with a key
    (``{"head.means": 10.0}``: the class means learn ten times faster than the rest).
    With a ``checkpoint``, an interrupted run resumes at the last finished epoch and ends
    bit-identical to an uninterrupted one.
    """
    if optimiser not in OPTIMISERS:
        raise ValueError(f"optimiser {optimiser!r} is unknown; choose one of {list(OPTIMISERS)}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r} is unknown; choose one of {list(SCHEDULES)}")
    generator = seed_everything(seed)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format).train()
    images, labels = train.images.to(device).contiguous(memory_format=memory_format), train.labels.to(device)
    groups = parameter_groups(model, lr, lr_scales or {})
    opt = make_optimiser(optimiser, groups, lr, weight_decay)
    steps_per_epoch = -(-len(labels) // batch_size)
    scheduler = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=epochs * steps_per_epoch)
                 if schedule == "onecycle" else None)
    losses, seconds, resumed = [], 0.0, False
    state = checkpoint.load() if checkpoint else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimiser"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        set_rng_state(state["rng"])
        losses, seconds, resumed = state["losses"], state["seconds"], True
    use_amp = amp and device.type == "cuda"
    for _ in tqdm(range(len(losses), epochs), desc=desc, leave=False, initial=len(losses), total=epochs):
        started = time.perf_counter()
        total = torch.zeros((), device=device)
        for x, y in batches(images, labels, batch_size=batch_size, shuffle=True, generator=generator):
            if augment is not None:
                x = augment(x, generator)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = F.cross_entropy(model(x), y) if loss_fn is None else loss_fn(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
            total += loss.detach() * len(y)
        losses.append(float(total) / len(labels))  # float() waits for the device: the epoch's time is real
        seconds += time.perf_counter() - started
        if checkpoint:
            checkpoint.save({"model": model.state_dict(), "optimiser": opt.state_dict(), "generator": generator.get_state(),
                             "scheduler": scheduler.state_dict() if scheduler is not None else None,
                             "rng": rng_state(), "losses": losses, "seconds": seconds})
    model.eval()
    return FitReport(losses, seconds, epochs * len(labels) / max(seconds, 1e-9), resumed)
