"""Seeds, devices, the one checkpoint-and-resume helper, and a plain classifier loop.

Every training loop of the book (the classifier here, the embedding head, the labelling VAE, the
two-headed network, the pretraining) saves and resumes through :class:`Checkpoint`: the model,
the optimiser, the scheduler, every random generator and the loop's own state, as tensors and
plain containers only, read back with ``torch.load(weights_only=True)``. A checkpoint's file name
is a digest of the settings it was made with and of the code that made it
(:func:`settings_digest`), so only the same run with the same code resumes.

The trainer knows nothing about any paper: it fits a model that maps images to logits with
cross-entropy, or with the loss it is given.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .data import Split, batches
from .keys import code_digest, settings_digest
from .provenance import native_bf16



def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; return a CPU generator for data order."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    """``'auto'`` is CUDA when available, else the CPU; anything else is passed to ``torch.device``.
    On CUDA, cuDNN picks its fastest algorithms for the shapes it meets (``cudnn.benchmark``)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for but CUDA is not available; use 'auto' or 'cpu'")
        torch.backends.cudnn.benchmark = True  # the fastest convolution algorithms for the shapes met; the shapes here repeat
    return device


def clock(device: torch.device) -> float:
    """A timer for comparing the cost of two computations that does not drift with the machine's
    load: the process's CPU time (all its threads) on a CPU; on CUDA, the wall clock once the GPU
    has finished its queued work. Differences of two readings are seconds of that clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


CLOCKS = {"cpu": "process CPU time, all threads", "cuda": "wall time, the GPU synchronised"}


def autocast(device: torch.device, amp: bool) -> torch.autocast:
    """The book's one mixed-precision switch: bfloat16 autocast when ``amp`` is asked and ``device``
    computes bfloat16 natively (a CUDA GPU; a CPU with AVX-512 BF16 or AMX, :func:`lib.provenance.native_bf16`),
    else fp32. Matrix products and convolutions run in bfloat16 with fp32 accumulation; losses and
    reductions stay in fp32 (PyTorch's autocast lists); the weights and the optimiser stay fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and native_bf16(device))


# ---------------------------------------------------------------- checkpoints


def rng_state() -> dict:
    """Every global random generator's state, as tensors and plain containers."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)), "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


PLAIN_TYPES = (bool, int, float, str, type(None))


def check_plain(value, where: str = "loop state") -> None:
    """Refuse anything ``torch.load(weights_only=True)`` could not read back (a dataclass, an array)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} must be a string or an integer")
            check_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
    elif type(value) not in PLAIN_TYPES and not isinstance(value, torch.Tensor):  # numpy's float64 is a float, but not plain
        raise TypeError(f"{where} is a {type(value).__name__}: a checkpoint holds only tensors and plain containers")


class Checkpoint:
    """The one way a training saves its progress and resumes it after an interruption.

    ``Checkpoint(directory, name, *settings)`` names one file, ``<name>-<digest>.pt``, where the
    digest covers ``settings`` (frozen dataclasses and plain values: every field counts) and the
    library's code (``code``, by default the whole library). :meth:`save` writes the state of the
    objects it is given (anything with ``state_dict``, and ``torch.Generator``), every global random
    generator and the loop's own state, atomically, at most once every ``every_s`` seconds unless
    ``final``; :meth:`resume` reads them back into the same objects. A damaged file is reported and
    the training starts again. ``directory=None`` saves nothing.
    """

    def __init__(self, directory: str | Path | None, name: str, *settings, code: str | None = None, every_s: float = 60.0):
        self.key = settings_digest(*settings, code=code if code is not None else code_digest())
        self.path = None if directory is None else Path(directory) / f"{name}-{self.key[:12]}.pt"
        self.every_s = every_s
        self._last_save = time.monotonic()

    def part(self, name: str) -> Checkpoint:
        """The checkpoint of one of several trainings made under this one (a unit that trains two
        networks): keyed by this one's key and ``name``, removed with it."""
        part = Checkpoint(None, name, self.key, name, code="", every_s=self.every_s)
        part.path = None if self.path is None else self.path.with_name(f"{self.path.stem}.{name}.pt")
        return part

    def resume(self, **stateful) -> dict | None:
        """Load the saved states into ``stateful`` objects and the global generators; return the
        loop's own state, or None when there is nothing to resume."""
        if self.path is None or not self.path.is_file():
            return None
        try:
            saved = torch.load(self.path, weights_only=True)
            if saved.get("key") != self.key or set(saved["objects"]) != set(stateful):
                raise ValueError(f"it holds {sorted(saved['objects'])} for key {saved.get('key')}, not {sorted(stateful)} for {self.key}")
        except Exception as err:  # a half-written, damaged or foreign file: start over, loudly
            print(f"checkpoint {self.path} is unreadable ({type(err).__name__}: {err}); starting this training from scratch")
            return None
        for name, obj in stateful.items():
            if isinstance(obj, torch.Generator):
                obj.set_state(saved["objects"][name])
            else:
                obj.load_state_dict(saved["objects"][name])
        set_rng_state(saved["rng"])
        self._last_save = time.monotonic()
        return saved["loop"]

    def save(self, loop: dict, *, final: bool = False, **stateful) -> None:
        """Write the checkpoint unless one was written less than ``every_s`` seconds ago (``final`` always writes)."""
        if self.path is None or (not final and time.monotonic() - self._last_save < self.every_s):
            return
        check_plain(loop)
        objects = {name: obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict() for name, obj in stateful.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({"key": self.key, "objects": objects, "rng": rng_state(), "loop": loop}, tmp)
        tmp.replace(self.path)
        self._last_save = time.monotonic()

    def remove(self) -> None:
        """Delete the file and its parts' (a finished training whose result is recorded elsewhere needs them no more)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            for part in self.path.parent.glob(f"{self.path.stem}.*.pt"):
                part.unlink()


# ---------------------------------------------------------------- the classifier loop


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1024, *, amp: bool = False, channels_last: bool = False,
            to_cpu: bool = True) -> torch.Tensor:
    """``model``'s float outputs for uint8 ``images`` (moved to its device batch by batch), (N, ...).

    Logits of a classifier, or features of a trunk; on the CPU, or left on the model's device with
    ``to_cpu=False``. ``amp`` and ``channels_last`` as in :class:`Recipe`.
    """
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device  # a model without parameters runs on the CPU
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    out = []
    for (x,) in batches(images, batch_size=batch_size, shuffle=False):
        with autocast(device, amp):
            out.append(model(x.to(device).contiguous(memory_format=memory_format)).float())
    out = torch.cat(out)
    return out.cpu() if to_cpu else out


OPTIMISERS = ("adam", "nadam", "sgd")
SCHEDULES = ("constant", "onecycle")


@dataclass(frozen=True)
class Recipe:
    """How a network is trained: the optimiser and its schedule, the batches, the precision."""

    epochs: int
    lr: float  # the learning rate (the peak of a one-cycle schedule)
    batch_size: int
    optimiser: str = "adam"  # "adam" (fused), "nadam", or "sgd" with Nesterov momentum 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" or "onecycle" (Smith's: up to lr, then annealed)
    amp: bool = False  # bfloat16 autocast where the device computes it natively (CUDA; a CPU with AVX-512 BF16 or AMX), else fp32
    channels_last: bool = False  # NHWC images and weights, which tensor cores and oneDNN's bf16 kernels prefer
    compile: bool = False  # torch.compile the forward pass and the loss (pays on a GPU for long runs; costs a first-step compilation)

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 1 or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"epochs={self.epochs!r} and batch_size={self.batch_size!r} must be integers of at least 1")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"lr={self.lr} must be positive and weight_decay={self.weight_decay} non-negative")
        if self.optimiser not in OPTIMISERS:
            raise ValueError(f"optimiser {self.optimiser!r} is unknown; choose one of {list(OPTIMISERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r} is unknown; choose one of {list(SCHEDULES)}")


def make_optimiser(name: str, params, lr: float, weight_decay: float, device: torch.device | None = None) -> torch.optim.Optimizer:
    """Adam (fused), NAdam, or SGD with Nesterov momentum 0.9 (the usual CIFAR recipe), fused on CUDA
    (one kernel for all parameters instead of several per parameter)."""
    cuda = device is not None and device.type == "cuda"
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    if name == "nadam":
        return torch.optim.NAdam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay, fused=cuda or None)
    raise ValueError(f"optimiser {name!r} is unknown; choose one of {list(OPTIMISERS)}")


def parameter_groups(model: nn.Module, lr: float, lr_scales: dict[str, float], no_decay: tuple[str, ...] = ()) -> list[dict]:
    """The optimiser's parameter groups: one at ``lr``, and one per ``lr_scales`` key at ``lr * scale``.

    Parameters whose names start with a ``no_decay`` prefix get ``weight_decay = 0`` in their group.
    """
    named = list(model.named_parameters())
    for prefix, scale in lr_scales.items():
        if scale <= 0:
            raise ValueError(f"lr_scales[{prefix!r}] = {scale} must be positive")
    for prefix in [*lr_scales, *no_decay]:
        if not any(name.startswith(prefix) for name, _ in named):
            raise ValueError(f"{prefix!r} names no parameter of {type(model).__name__}; its parameters start with "
                             f"{sorted({name.split('.')[0] for name, _ in named})}")
    groups: dict[tuple, list] = {}
    for name, param in named:
        scale = next((prefix for prefix in lr_scales if name.startswith(prefix)), None)
        decay = not any(name.startswith(prefix) for prefix in no_decay)
        groups.setdefault((scale, decay), []).append(param)
    out = []
    for (scale, decay), params in groups.items():
        group = {"params": params, "lr": lr * (lr_scales[scale] if scale else 1.0)}
        if not decay:
            group["weight_decay"] = 0.0
        out.append(group)
    return out


# ---------------------------------------------------------------- the one epoch loop


def fit_epochs(epochs: int, stateful: dict, state: dict, train_epoch: Callable[[dict], None], *, device: torch.device,
               end_epoch: Callable[[dict], None] | None = None, stop: Callable[[dict], bool] | None = None,
               start: Callable[[dict], None] | None = None, checkpoint: Checkpoint | None = None,
               desc: str = "training") -> tuple[dict, bool]:
    """The book's one epoch loop; every training plugs its epoch into it.

    ``state`` is the loop's own state for a fresh start (plain containers: histories, counters);
    the loop adds ``epoch`` (epochs done), ``seconds`` (wall time) and ``clock`` (:func:`clock`
    time), both summed over ``train_epoch`` only. With a ``checkpoint`` holding this training, the
    ``stateful`` objects (model, optimiser, schedulers, generators) and the state are resumed from
    it instead; ``start(state)`` then restores what lives outside the state (an annotator's count of
    labels). Then, while fewer than ``epochs`` are done and ``stop(state)`` is false:

    1. ``train_epoch(state)``: one pass over the data, timed;
    2. ``epoch`` counts it; ``end_epoch(state)``: what follows an epoch, untimed (evaluation, a
       scheduler's step, early stopping's bookkeeping, a labelling round);
    3. a checkpoint (at most once a minute, and always after the last epoch).

    Returns the state and whether it was resumed. An interrupted training resumes after its last saved
    epoch and ends bit-identical to an uninterrupted one.
    """
    resumed = checkpoint.resume(**stateful) if checkpoint else None
    state = resumed or {"epoch": 0, "seconds": 0.0, "clock": 0.0, **state}
    if start is not None:
        start(state)
    progress = tqdm(total=epochs, initial=state["epoch"], desc=desc, leave=False)
    for epoch in range(state["epoch"], epochs):
        if stop is not None and stop(state):
            break
        started, ticked = time.perf_counter(), clock(device)
        train_epoch(state)
        state["seconds"] += time.perf_counter() - started
        state["clock"] += clock(device) - ticked
        state["epoch"] = epoch + 1
        if end_epoch is not None:
            end_epoch(state)
        if checkpoint:
            checkpoint.save(state, final=state["epoch"] >= epochs or bool(stop and stop(state)), **stateful)
        progress.update(1)
    progress.close()
    return state, resumed is not None


class FitReport(NamedTuple):
    losses: list[float]  # mean training loss of every epoch
    seconds: float  # training wall time, summed over resumed sessions
    images_per_s: float  # training images per second of wall time
    resumed: bool  # whether the run continued from a checkpoint
    evaluations: list[float] = []  # evaluate(model) after every epoch, when given
    clock_s: float = 0.0  # training time by clock(device), summed over resumed sessions


def fit_classifier(
    model: nn.Module,
    train: Split,
    recipe: Recipe,
    *,
    seed: int,
    device: torch.device,
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    lr_scales: dict[str, float] | None = None,
    no_decay: tuple[str, ...] = (),
    evaluate: Callable[[nn.Module], float] | None = None,
    checkpoint: Checkpoint | None = None,
    desc: str = "training",
) -> FitReport:
    """Train on in-memory batches with ``recipe``; resumable through ``checkpoint``.

    The loss is cross-entropy on ``model(x)`` unless ``loss_fn(model, x, y)`` is given;
    ``augment(x, generator)`` transforms every batch on its device (see
    :func:`lib.data.random_crop_flip`). ``lr_scales`` multiplies the learning rate of the
    parameters whose names start with a key (``{"head.means": 10.0}``: the class means learn ten
    times faster than the rest); ``no_decay`` exempts parameters from weight decay. ``evaluate(model)``
    runs after every epoch (outside the timed training) and its values are returned, e.g. a test
    accuracy curve that shows whether the training converged. An interrupted run resumes at its
    last saved epoch and ends bit-identical to an uninterrupted one.
    """
    generator = seed_everything(seed)
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format).train()
    images, labels = train.images.to(device).contiguous(memory_format=memory_format), train.labels.to(device)
    groups = parameter_groups(model, recipe.lr, lr_scales or {}, no_decay)
    opt = make_optimiser(recipe.optimiser, groups, recipe.lr, recipe.weight_decay, device)
    steps_per_epoch = -(-len(labels) // recipe.batch_size)
    stateful = {"model": model, "optimiser": opt, "generator": generator}
    if recipe.schedule == "onecycle":
        stateful["scheduler"] = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in groups], total_steps=recipe.epochs * steps_per_epoch)

    def batch_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(device, recipe.amp):
            return F.cross_entropy(model(x), y) if loss_fn is None else loss_fn(model, x, y)

    compute_loss = torch.compile(batch_loss) if recipe.compile else batch_loss

    def train_epoch(loop: dict) -> None:
        model.train()
        total = torch.zeros((), device=device)
        for x, y in batches(images, labels, batch_size=recipe.batch_size, shuffle=True, generator=generator):
            if augment is not None:
                x = augment(x, generator)
            loss = compute_loss(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if "scheduler" in stateful:
                stateful["scheduler"].step()
            total += loss.detach() * len(y)
        loop["losses"].append(float(total) / len(labels))  # float() waits for the device: the epoch's time is real

    def end_epoch(loop: dict) -> None:
        if evaluate is not None:
            loop["evaluations"].append(float(evaluate(model)))

    loop, resumed = fit_epochs(recipe.epochs, stateful, {"losses": [], "evaluations": []}, train_epoch, end_epoch=end_epoch,
                               checkpoint=checkpoint, device=device, desc=desc)
    model.eval()
    return FitReport(loop["losses"], loop["seconds"], recipe.epochs * len(labels) / max(loop["seconds"], 1e-9), resumed, loop["evaluations"],
                     loop["clock"])
