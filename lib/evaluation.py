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

    With one value the interval collapses to the value itself; ``n`` says so.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    m = float(x.mean())
    if x.size < 2:
        return Interval(m, m, m, 1)
    half = float(stats.t.ppf(0.5 + level / 2, df=x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return Interval(m, m - half, m + half, int(x.size))


def short_ci(values: Sequence[float], digits: int = 3) -> str:
    """A table cell: "mean ± half-width of the 95% interval", or just the mean for one value."""
    ci = mean_ci(values)
    return f"{ci.mean:.{digits}f} ± {ci.high - ci.mean:.{digits}f}" if ci.n > 1 else f"{ci.mean:.{digits}f}"


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose arg-max is the label."""
    return float((logits.argmax(dim=1) == labels).float().mean())
