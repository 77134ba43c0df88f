"""How a claim of a paper is judged: the scale that can test it, and a rule on our 95% interval.

A verdict is one of

* **reproduced**: the run can test the claim, and our whole 95% interval (over seeds) lies in the
  region the rule accepts;
* **not reproduced**: it can test it, and the whole interval lies outside that region;
* **inconclusive**: the interval straddles the region's edge: the run is too noisy to decide
  (one seed is always inconclusive: it has no interval);
* **untestable here**: no run this book can make tests the claim (the paper's data is private, or
  it needs ImageNet weights or CIFAR-100, which no machine here reaches); the row says what would
  test it, and our number is shown but not judged;
* **needs a larger run**: a run of this book could test it (on a GPU, or with the paper's model),
  but this run is below that scale; our number is shown but not judged;
* **not run**: the run could not produce the number at all (its data is unreachable, say).

A claim that a smaller model *can* test (a difference between two methods trained alike, say) is
judged on it, and the row names the stand-in (``stand_in``): "not reproduced (stand-in: mini
backbones)". A scale is never used to hide a decided result.

A wider interval can only move a verdict towards *inconclusive*, never towards *reproduced*.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import IntEnum

from .evaluation import Interval

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
UNTESTABLE, NEEDS_LARGER, NOT_RUN = "untestable here", "needs a larger run", "not run"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, UNTESTABLE, NEEDS_LARGER, NOT_RUN)
LEGACY_UNTESTED = "untested at this scale"  # the one verdict of earlier records that the two above replace (see legacy_verdict)


class Scale(IntEnum):
    """What a run can test, weakest first."""

    TOY = 0  # a scaled-down run (the quick profile): shows that the method runs
    CONVERGED = 1  # the paper's data, smaller models trained to convergence (the cpu profile)
    PAPER = 2  # the paper's models and settings (the full profile)

    @property
    def label(self) -> str:
        return {Scale.TOY: "toy scale", Scale.CONVERGED: "converged, CPU-sized models", Scale.PAPER: "the paper's models and settings"}[self]


PROFILE_SCALE = {"quick": Scale.TOY, "cpu": Scale.CONVERGED, "full": Scale.PAPER}


def _fmt(x: float) -> str:
    return "∞" if x == math.inf else "-∞" if x == -math.inf else f"{x:g}"


@dataclass(frozen=True)
class Region:
    """The values a rule accepts: from ``low`` to ``high``, each end closed unless marked open."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __post_init__(self):
        if math.isnan(self.low) or math.isnan(self.high) or self.low > self.high:
            raise ValueError(f"a rule's region needs low <= high, got [{self.low}, {self.high}]")

    def holds(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def verdict(self, ours: Interval) -> str:
        """Reproduced if the whole interval lies in the region, not reproduced if it lies wholly
        outside, inconclusive otherwise."""
        if any(math.isnan(x) for x in (ours.mean, ours.low, ours.high)):
            raise ValueError(f"cannot judge an interval with NaN: {ours}")
        if self.holds(ours.low) and self.holds(ours.high):
            return REPRODUCED
        wholly_below = ours.high < self.low or (self.low_open and ours.high == self.low)
        wholly_above = ours.low > self.high or (self.high_open and ours.low == self.high)
        return NOT_REPRODUCED if wholly_below or wholly_above else INCONCLUSIVE

    def scaled(self, factor: float) -> "Region":
        """The same region in another unit (``factor`` > 0): a rule on fractions, read in points."""
        if not factor > 0:
            raise ValueError(f"a region's unit factor must be positive, got {factor}")
        return Region(self.low * factor, self.high * factor, self.low_open, self.high_open)

    def as_list(self) -> list:
        """``[low, high, low_open, high_open]`` for a results file (an infinite end as None)."""
        return [None if self.low == -math.inf else self.low, None if self.high == math.inf else self.high, self.low_open, self.high_open]

    @classmethod
    def from_list(cls, values: list) -> "Region":
        low, high, low_open, high_open = values
        return cls(-math.inf if low is None else low, math.inf if high is None else high, low_open, high_open)

    @classmethod
    def from_short(cls, text: str) -> "Region":
        """The region a rule's short text names (``CI ≥ 0.75``, ``CI > 0``, ``CI within [10, 16]``, ...): for
        records made before rows carried their region."""
        within = re.fullmatch(r"CI within \[(\S+), (\S+)\]", text)
        if within:
            return cls(float(within[1]), float(within[2]))
        bound = re.fullmatch(r"CI ([≥>≤<]) (\S+)", text)
        if not bound:
            raise ValueError(f"not a rule's short text: {text!r}")
        value = float(bound[2])
        return {"≥": cls(low=value), ">": cls(low=value, low_open=True), "≤": cls(high=value), "<": cls(high=value, high_open=True)}[bound[1]]

    def short(self) -> str:
        if self.high == math.inf:
            return f"CI {'>' if self.low_open else '≥'} {_fmt(self.low)}"
        if self.low == -math.inf:
            return f"CI {'<' if self.high_open else '≤'} {_fmt(self.high)}"
        return f"CI within [{_fmt(self.low)}, {_fmt(self.high)}]"

    def describe(self) -> str:
        return (f"reproduced if the whole 95% interval lies in {self._text()}, not reproduced if it lies wholly outside, "
                "inconclusive otherwise")

    def _text(self) -> str:
        left = "(" if self.low_open or self.low == -math.inf else "["
        right = ")" if self.high_open or self.high == math.inf else "]"
        return f"{left}{_fmt(self.low)}, {_fmt(self.high)}{right}"


def AtLeast(value: float, tolerance: float = 0.0) -> Region:
    """Higher is better: the paper's ``value``, less ``tolerance``, or more."""
    return Region(low=value - tolerance)


def Between(low: float, high: float) -> Region:
    """A range the paper states, both ends included."""
    return Region(low=low, high=high)


def Above(value: float = 0.0) -> Region:
    """A gain or a difference: strictly above ``value``."""
    return Region(low=value, low_open=True)


def judge(rule: Region, ours: Interval, *, needs: Scale, scale: Scale, untestable: str | None = None,
          stand_in: str | None = None, data: str = "the paper's data") -> tuple[str, str]:
    """The verdict on ``ours`` by ``rule``, and why.

    ``untestable``: why no run of this book can test the claim, and what would (verdict
    *untestable here*). ``needs``: the scale at which the claim is tested as the paper made it. A
    run below it is *needs a larger run*, unless ``stand_in`` names the smaller model (or data) on
    which this run does test it: a run at the converged scale or above is then judged, and the row
    names the stand-in. ``data``: what the run trained on, for the reason's text."""
    if untestable:
        return UNTESTABLE, untestable
    if scale < needs and not (stand_in and scale >= Scale.CONVERGED):
        return NEEDS_LARGER, f"needs {needs.label}; this run is at {scale.label}, on {data}"
    return rule.verdict(ours), rule.describe()


def legacy_verdict(claim: dict) -> str:
    """A claim row's verdict in today's words: an earlier record's "untested at this scale" becomes
    *untestable here* when its reason was the claim (private data, say) and *needs a larger run*
    when its reason was the run's scale ("needs the paper's scale; ...")."""
    if claim["verdict"] != LEGACY_UNTESTED:
        return claim["verdict"]
    return NEEDS_LARGER if claim.get("why", "").startswith("needs ") else UNTESTABLE
