"""What every chapter run is told before it starts: its profile, seeds, device and results folder.

A chapter's own settings are small frozen dataclasses in its experiment module (the data, the
network, the recipe), built once from the papermill ``parameters`` cell by that module's
``make_settings`` and checked in their ``__post_init__``. The runner builds them before a kernel
starts, so a bad value is refused before anything runs. This module holds the part they share.
"""

from __future__ import annotations

from dataclasses import dataclass

PROFILES = {
    "quick": "minutes on a CPU: shows that the method runs; tests no paper-scale claim",
    "cpu": "the paper's data on CPU-sized models, trained to convergence",
    "full": "the paper's models and settings (a GPU)",
}


@dataclass(frozen=True)
class RunSettings:
    """The settings every chapter has, whatever its paper."""

    profile: str = "quick"  # one of PROFILES
    seeds: tuple[int, ...] = (0, 1, 2)  # one run per seed; every number is a mean with its 95% interval
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"
    results_root: str = "../results"  # results/<profile>/<chapter>/ receives the chapter's results
    smoke: bool = False  # a plumbing test with tiny settings: the sanity checks, which they cannot pass, are skipped

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        seeds = self.seeds
        if not seeds or len(set(seeds)) != len(seeds) or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
            raise ValueError(f"seeds {list(seeds)} must be a non-empty list of distinct non-negative integers")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:") and self.device[5:].isdigit()):
            raise ValueError(f"device {self.device!r} is unknown; choose 'auto', 'cpu', 'cuda' or 'cuda:N'")


def run_settings(profile: str, seeds, device: str, results_root: str, smoke: bool = False) -> RunSettings:
    return RunSettings(profile, tuple(seeds), device, str(results_root), smoke)


def positive(**values) -> None:
    """Refuse any value that is not an integer of at least 1, naming it."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r} must be an integer of at least 1")


def distinct_positive(name: str, values) -> None:
    """Refuse a list that repeats an entry or holds anything but integers of at least 1."""
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values) or len(set(values)) != len(values):
        raise ValueError(f"{name} {list(values)} must be distinct integers of at least 1")


QUICK_LIMIT_MINUTES = 3.0  # a quick run of one chapter, on a 2-core CPU, whatever a reader picks


def within_quick_budget(run: RunSettings, work: float, default_work: float, default_minutes: float) -> None:
    """Refuse quick-profile settings that ask more work than fits ``QUICK_LIMIT_MINUTES``.

    ``work`` is the chapter's estimate of what its settings ask (images through networks, relative),
    ``default_work`` the same for its quick defaults, which take ``default_minutes`` on a 2-core CPU
    (measured). Other profiles are not bounded here: they say what they cost in their yaml.
    """
    allowed = QUICK_LIMIT_MINUTES / default_minutes
    if run.profile == "quick" and work > allowed * default_work:
        raise ValueError(
            f"these settings ask {work / default_work:.1f}× the work of the quick profile's defaults (about {default_minutes:g} min on a "
            f"2-core CPU), more than the {allowed:.2f}× that fits the quick profile's {QUICK_LIMIT_MINUTES:g} minutes: use fewer seeds, "
            "fewer or smaller models or images, or another profile (--profile cpu)")
