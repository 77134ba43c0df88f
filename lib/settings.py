"""A chapter's settings: its papermill parameters, each named, typed, defaulted, documented and
range-checked once, in a small frozen dataclass.

Each chapter's experiment module defines ``Settings``, a subclass of :class:`ChapterSettings` whose
fields are exactly the chapter's ``parameters`` cell (a test keeps the two equal, defaults
included: the defaults are the quick profile). The chapter builds it from its parameters in one
line, ``experiment.Settings.of(globals())``, and the runner builds it the same way before a kernel
starts, so a bad value is refused before anything runs. The experiment's code reads the fields, or
the small groups of them that its units are keyed by (``settings.run``, and the experiment's own).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

PROFILES = {
    "quick": "minutes on a CPU: shows that the method runs; tests no paper-scale claim",
    "cpu": "the paper's data on CPU-sized models, trained to convergence",
    "full": "the paper's models and settings (a GPU)",
}


@dataclass(frozen=True)
class RunSettings:
    """The settings every chapter has, whatever its paper (a group of :class:`ChapterSettings`)."""

    profile: str
    seeds: tuple[int, ...]
    device: str
    results_root: str
    smoke: bool

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        seeds = self.seeds
        if not seeds or len(set(seeds)) != len(seeds) or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
            raise ValueError(f"seeds {list(seeds)} must be a non-empty list of distinct non-negative integers")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:") and self.device[5:].isdigit()):
            raise ValueError(f"device {self.device!r} is unknown; choose 'auto', 'cpu', 'cuda' or 'cuda:N'")


@dataclass(frozen=True)
class ChapterSettings:
    """The parameters every chapter's ``parameters`` cell opens with; an experiment's ``Settings``
    adds its own after them. Lists (as papermill and YAML give them) are kept as tuples."""

    profile: str = "quick"  # one of PROFILES
    seeds: tuple[int, ...] = (0, 1, 2)  # one run per seed; every number is a mean with its 95% interval
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"
    results_root: str = "../results"  # results/<profile>/<chapter>/ receives the chapter's results
    smoke: bool = False  # a plumbing test with tiny settings: the sanity checks, which they cannot pass, are skipped

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        self.run  # its checks

    @property
    def run(self) -> RunSettings:
        return RunSettings(self.profile, tuple(self.seeds), self.device, str(self.results_root), self.smoke)

    @classmethod
    def parameters(cls) -> tuple[str, ...]:
        """The chapter's parameters, in the order of its ``parameters`` cell."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, namespace: dict):
        """The settings from a chapter's namespace (``globals()`` after its ``parameters`` cell): one
        value a field, read by name."""
        missing = [name for name in cls.parameters() if name not in namespace]
        if missing:
            raise ValueError(f"the parameters cell does not set {missing}, fields of {cls.__module__}.{cls.__name__}")
        return cls(**{name: namespace[name] for name in cls.parameters()})


def positive(**values) -> None:
    """Refuse any value that is not an integer of at least 1, naming it."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r} must be an integer of at least 1")


def distinct_positive(name: str, values) -> None:
    """Refuse a list that repeats an entry or holds anything but integers of at least 1."""
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values) or len(set(values)) != len(values):
        raise ValueError(f"{name} {list(values)} must be distinct integers of at least 1")
