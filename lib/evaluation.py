"""Accuracy and the statistics every reported number carries: mean and 95% interval over seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from scipy import stats


class Interval(NamedTuple):
    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        if self.n < 2:
            return f"{self.mean:.3g} (n=1, no interval)"
        return f"{self.mean:.3g} ± {self.high - self.mean:.2g} (n={self.n})"


def mean_ci(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean and Student-t confidence interval of the mean over independent runs (seeds).

    One value has no interval: its bounds are infinite (nothing can be concluded from it), and
    ``n`` says so. A NaN or an infinite value is refused: it is a defect, not a measurement.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    if not np.isfinite(x).all():
        raise ValueError(f"mean_ci needs finite values, got {x.tolist()}")
    m = float(x.mean())
    if x.size < 2:
        return Interval(m, -math.inf, math.inf, 1)
    half = float(stats.t.ppf(0.5 + level / 2, df=x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return Interval(m, m - half, m + half, int(x.size))


def short_ci(values: Sequence[float], digits: int = 3) -> str:
    """A table cell: "mean ± half-width of the 95% interval", or just the mean for one value."""
    ci = mean_ci(values)
    return f"{ci.mean:.{digits}f} ± {ci.high - ci.mean:.{digits}f}" if ci.n > 1 else f"{ci.mean:.{digits}f}"


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose arg-max is the label."""
    return float((logits.argmax(dim=1) == labels).float().mean())


def percent_ci(values: Sequence[float], digits: int = 1) -> str:
    """Accuracies as prose: "28.5% ± 5.6" (the mean and the 95% half-width, in percent), or "28.5% (one seed)"."""
    ci = mean_ci(values)
    return f"{100 * ci.mean:.{digits}f}% ± {100 * (ci.high - ci.mean):.{digits}f}" if ci.n > 1 else f"{100 * ci.mean:.{digits}f}% (one seed)"


def points_ci(differences: Sequence[float], digits: int = 1) -> str:
    """Differences of accuracies as prose: "−4.1 ± 0.9 points" (signed, in percentage points)."""
    ci = mean_ci(differences)
    mean = f"{100 * ci.mean:+.{digits}f}".replace("-", "−")
    return f"{mean} ± {100 * (ci.high - ci.mean):.{digits}f} points" if ci.n > 1 else f"{mean} points (one seed)"


def compared(differences: Sequence[float]) -> str:
    """How a paired difference a − b over seeds reads, as "a is … b": "higher than", "lower than" or
    "not distinguishable from" (the 95% interval of the difference includes 0, or there is one seed)."""
    ci = mean_ci(differences)
    if ci.low > 0:
        return "higher than"
    if ci.high < 0:
        return "lower than"
    return "not distinguishable from"


def converged(curve: Sequence[float], window: int = 3, tolerance: float = 0.005) -> bool:
    """The book's convergence criterion: over the last ``window`` epochs the curve (a test accuracy
    per epoch) moves by less than ``tolerance`` (half a point)."""
    last = list(curve)[-window:]
    return len(last) == window and max(last) - min(last) < tolerance
