"""The quick profile's time budget: what each chapter's quick defaults cost on a 2-core CPU, and the
one rule that refuses quick settings which would not fit its three minutes.

Each experiment module's ``work(settings)`` estimates what settings ask (training images through its
networks, in relative units). :data:`QUICK_DEFAULTS` holds, for each experiment, the work of its
chapter's quick defaults and their measured wall time, the whole chapter from the command's start to
its end (``benchmarks/quick_book.py``). :func:`check_quick_budget` refuses settings whose work
exceeds the defaults' by more than the budget allows. It is called where a run starts: by ``lib.run``
before a kernel starts, and by ``ChapterResults`` in the chapter's first cells, before any training,
for a run through papermill directly. Other profiles are not bounded: their yaml says what they cost.
This module is outside every experiment's code digest (``lib.keys``): re-measuring a cost marks no
result as made by other code.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

QUICK_LIMIT_MINUTES = 3.0  # a quick run of one chapter, on a 2-core CPU, whatever a reader picks
QUICK_BOOK_LIMIT_MINUTES = 10.0  # the four chapters' quick profiles together (CI executes them)


@dataclass(frozen=True)
class QuickCost:
    """A chapter's quick defaults: ``work`` (its experiment's ``work()`` of them; a test keeps the two
    in step) and ``minutes``, the chapter's measured wall time on a 2-core CPU."""

    work: float
    minutes: float


# Measured with `python benchmarks/quick_book.py` on a 2-core x86-64 CPU (torch 2.14.1, 2 threads),
# each chapter alone, the decoded-JPEG cache warm: 143, 126, 125 and 114 s.
# Chapter 2's capacity sweep and means-rate arm since added 10% to its work: its minutes are scaled by that (126 s x 1.10);
# benchmarks/guard_drift.py's native runs of 2026-12-06 took 110, 111, 88 and 70 s for the four chapters.
QUICK_DEFAULTS = {
    "embedding_experiment": QuickCost(work=107_100, minutes=2.4),
    "soc_experiment": QuickCost(work=98_437.5, minutes=2.3),
    "hierarchy_experiment": QuickCost(work=133_680, minutes=2.4),
    "vae_experiment": QuickCost(work=281_723, minutes=1.9),
}


def quick_cost(experiment: ModuleType) -> QuickCost:
    """The measured cost of the quick defaults of the chapter that runs ``experiment``."""
    name = experiment.__name__.removeprefix("lib.")
    if name not in QUICK_DEFAULTS:
        raise KeyError(f"no measured quick cost for {name}: add it to lib.budget.QUICK_DEFAULTS (python benchmarks/quick_book.py)")
    return QUICK_DEFAULTS[name]


def check_quick_budget(experiment: ModuleType, settings) -> None:
    """Refuse quick-profile ``settings`` that ask more work than fits QUICK_LIMIT_MINUTES on a 2-core
    CPU; a ValueError says by how much and what to change. Settings of other profiles pass, and so do
    settings that are not ``experiment.Settings`` (a test's stand-in has no work to estimate)."""
    if not isinstance(settings, experiment.Settings) or settings.profile != "quick":
        return
    cost = quick_cost(experiment)
    work, allowed = experiment.work(settings), QUICK_LIMIT_MINUTES / cost.minutes
    if work > allowed * cost.work:
        raise ValueError(
            f"these settings ask {work / cost.work:.1f}× the work of the quick profile's defaults (about {cost.minutes:g} min on a "
            f"2-core CPU), more than the {allowed:.2f}× that fits the quick profile's {QUICK_LIMIT_MINUTES:g} minutes: use fewer seeds, "
            "fewer or smaller models or images, or another profile (--profile cpu)")
