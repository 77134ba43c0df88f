"""Units: every training of a chapter run, done once and recorded.

A unit is one training (or the few that only make sense together) and the settings that decide its
result. When it ends it writes a small record (metrics, curves, the tensors the figures need;
tensors and plain containers only, well under a megabyte) to
``results/<profile>/<chapter>/units/<name>-<digest>.pt``, the digest covering its settings and the
code that runs it (:func:`lib.keys.settings_digest`). A run skips every unit whose record
exists, so a profile can be split over several machines or invocations and merged by copying the
records into one folder; the chapter renders from the records. While it trains, a unit checkpoints
(at most once a minute) under ``checkpoints/``, so an interrupted unit resumes where it stopped.

Each chapter's experiment module lists its units in ``plan(settings)``, in the order the chapter
runs them, each with an estimate of its cost on one H100 (:class:`Work`); ``python -m lib.run
CHAPTER --profile full --plan`` prints that list and what is already done.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .keys import settings_digest
from .training import Checkpoint, check_plain

DEADLINE_ENV = "BOOK_DEADLINE"  # a Unix time: no unit is started that its estimate says would not end before it

# How the plan turns work into minutes on one H100. Published: ResNet-50 v1.5 trains at 2,470
# images/s on one A100 80GB in mixed precision (NVIDIA DeepLearningExamples, PyTorch ResNet50 v1.5
# README, pytorch-21.03), about 61 TFLOP/s at its 24.6 GFLOP a training image. Scaled by the ratio
# of dense bf16 matrix-product rates measured on the two chips (H100 about 790 TFLOP/s, the device
# tool's KINDS.md; A100 312 TFLOP/s peak), that is about 150 TFLOP/s; the plan takes two thirds of
# it. Small models are bound by launching kernels rather than by arithmetic: every optimiser step
# costs at least STEP_SECONDS (assumed for eager PyTorch; to be replaced by a measurement).
H100_TRAINING_FLOPS = 100e12
STEP_SECONDS = 0.004


@dataclass(frozen=True)
class Work:
    """What a unit costs: images through its networks, and its optimiser steps."""

    train_images: int  # training images, summed over epochs (forward and backward: three passes of work)
    forward_images: int  # images through a network forward only (features, evaluation)
    flops: float  # forward FLOPs of one image, measured (:func:`forward_flops`)
    steps: int  # optimiser steps
    cpu_seconds: float = 0.0  # work on the host's CPU that no GPU speeds up (scikit-learn's classifiers, k-means)

    def h100_minutes(self) -> float:
        arithmetic = (3 * self.train_images + self.forward_images) * self.flops / H100_TRAINING_FLOPS
        return (arithmetic + self.steps * STEP_SECONDS + self.cpu_seconds) / 60

    def cpu_minutes(self, flops_per_s: float) -> float:
        """Minutes on a CPU whose training runs at ``flops_per_s`` (a rate measured on the chapter's
        own models, :func:`cpu_training_rate`): the same images, at that rate; a CPU's step costs no launch overhead."""
        return ((3 * self.train_images + self.forward_images) * self.flops / flops_per_s + self.cpu_seconds) / 60


@dataclass(frozen=True)
class Unit:
    name: str  # readable and unique within a chapter run, e.g. "cifar10-soc3-seed0"
    key: tuple  # the settings (frozen dataclasses and plain values) that decide its result
    what: str  # one line for the plan
    work: Work


class BudgetReached(RuntimeError):
    """The time a command was given ends before the next unit would: run the same command again to go on."""


class Records:
    """The records of one chapter run's units, and the running of those not yet recorded."""

    def __init__(self, directory: Path, code: str, checkpoints: Path | None, stamp: dict | None = None):
        """``stamp``: what each new record says about where it was made (commit, machine)."""
        self.directory, self.code, self.checkpoints = Path(directory), code, checkpoints
        self.stamp = dict(stamp or {})
        self.computed: list[str] = []  # units run by this invocation
        self.loaded: list[str] = []  # units whose record was already there
        self.resumed: list[str] = []  # units that continued from a checkpoint
        self.wall_time_s = 0.0  # training time of every unit this run rendered, wherever it ran
        self.sources: set[tuple[str, str]] = set()  # (commit, machine) of those records

    def path(self, unit: Unit) -> Path:
        return self.directory / f"{unit.name}-{settings_digest(*unit.key, code=self.code)[:12]}.pt"

    def done(self, unit: Unit) -> bool:
        return self.path(unit).is_file()

    def artifact(self, unit: Unit) -> Path:
        """Where a unit may keep a large by-product that other units read (a pretrained backbone): beside
        its checkpoints, never committed. A unit whose record came from elsewhere makes it again."""
        base = self.checkpoints if self.checkpoints is not None else self.directory.parent / "checkpoints"
        return Path(base) / "artifacts" / self.path(unit).name

    def run(self, unit: Unit, compute: Callable[[Checkpoint], dict]) -> dict:
        """The unit's record: read if it exists, else computed by ``compute(checkpoint)`` and written.

        ``compute`` returns the record (tensors and plain containers); it may set ``"resumed": True``
        when its training continued from the checkpoint it was given.
        """
        path = self.path(unit)
        if path.is_file():
            try:
                record = torch.load(path, weights_only=True)
                self._count(record)  # before it counts as loaded: a record that cannot be counted is made again, once
                self.loaded.append(unit.name)
                return record
            except Exception as err:  # a damaged record is made again, never trusted
                print(f"record {path} is unreadable ({type(err).__name__}: {err}); running {unit.name} again")
        deadline = os.environ.get(DEADLINE_ENV)
        if deadline and time.time() + 60 * unit.work.h100_minutes() > float(deadline):
            raise BudgetReached(f"{unit.name} (estimated {unit.work.h100_minutes():.1f} min) would not end before the deadline "
                                f"${DEADLINE_ENV}; its records so far are kept: run the same command again to go on")
        checkpoint = Checkpoint(self.checkpoints, unit.name, *unit.key, code=self.code)
        started = time.time()
        record = compute(checkpoint)
        record = {**record, "unit": unit.name, "wall_time_s": time.time() - started, **self.stamp}
        check_plain(record, f"record of {unit.name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(record, tmp)
        tmp.replace(path)
        checkpoint.remove()
        self.computed.append(unit.name)
        self._count(record)
        if record.get("resumed"):
            self.resumed.append(unit.name)
        return record

    def _count(self, record: dict) -> None:
        self.wall_time_s += float(record.get("wall_time_s", 0.0))
        self.sources.add((str(record.get("git", "not recorded")), str(record.get("machine", "not recorded"))))

    def summary(self) -> dict:
        """For the run card: how many units this invocation ran, read from earlier records or resumed;
        the training time of them all; and the commits and machines that made them."""
        return {"units": sorted({*self.computed, *self.loaded}), "units_run": len(self.computed), "units_from_records": len(self.loaded),
                "units_resumed": len(self.resumed),
                "units_wall_time_s": round(self.wall_time_s, 1),
                "units_made_by": [{"git": git, "machine": machine} for git, machine in sorted(self.sources)]}


_FLOPS: dict = {}


def forward_flops(make_model: Callable[[], torch.nn.Module], shape: tuple[int, ...], key=None) -> float:
    """FLOPs of one image through ``make_model()`` forward, counted by torch's FLOP counter on the CPU
    (cached by ``key``, e.g. the model's config and the image size)."""
    from torch.utils.flop_counter import FlopCounterMode

    cache_key = key if key is not None else (make_model, shape)
    if cache_key not in _FLOPS:
        model = make_model().eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros(1, *shape))
        _FLOPS[cache_key] = float(counter.get_total_flops())
    return _FLOPS[cache_key]


ROOFLINE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "cpu_roofline.json"


def cpu_training_rate(chapter: int, fast: bool, path: Path = ROOFLINE) -> tuple[float, str] | None:
    """The training FLOP/s that ``benchmarks/cpu_roofline.py`` measured for a chapter's main models,
    run as the profile's header says (chapters 1 and 2: two single-thread workers, summed; chapter 3:
    one 2-thread process, the mean of its two backbones), on the fast path (bfloat16 autocast in the
    profile's layout; fp32 where the measuring CPU had no native bf16) or in fp32, and a line saying so
    and where it was measured; None when that benchmark has not measured the chapter."""
    import json

    if not path.is_file():
        return None
    measured = json.loads(path.read_text())
    rates = measured["training_flops_per_s"].get(str(chapter))
    if rates is None:
        return None
    path = "fast" if fast and measured["native_bf16"] else "fp32"
    return rates[path], (f"{'bf16 fast path' if path == 'fast' else 'fp32'} at {rates[path] / 1e9:.0f} GFLOP/s as {rates['how']}, "
                         f"measured on {measured['cpu']} ({measured['date']})")


def plan_lines(units: list[Unit], records: Records, cpu_rate: float | None = None) -> list[str]:
    """One line per unit (what it trains, its estimated H100 minutes, with ``cpu_rate`` (training
    FLOP/s) its estimated minutes on that CPU, whether it is done) and a total."""
    lines, total, cpu_total, done = [], 0.0, 0.0, 0
    for unit in units:
        minutes = unit.work.h100_minutes()
        is_done = records.done(unit)
        total += minutes
        done += is_done
        cpu = ""
        if cpu_rate:
            cpu_total += unit.work.cpu_minutes(cpu_rate)
            cpu = f"  {unit.work.cpu_minutes(cpu_rate):6.1f} min CPU"
        lines.append(f"{'done' if is_done else 'todo':4}  {minutes:6.2f} min{cpu}  {unit.name:<40} {unit.what}")
    lines.append(f"total: {len(units)} units, estimated {total:.1f} min on one H100" + (f", {cpu_total:.0f} min on the CPU" if cpu_rate else "")
                 + f", {done} done")
    return lines
