"""Intervals for numbers computed over a set of questions, shared by every tier that reports one.

    boot = Bootstrap(len(questions))
    low, high = boot.interval(lambda idx: float(scores[idx].mean()))          # a 95% interval of the mean
    low, high = boot.difference_interval(mean_of(after), mean_of(before))    # paired: excludes 0 = a real change
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Statistic = Callable[[np.ndarray], float]  # a number computed over the questions at these indices (repeats allowed)


def perplexity_of(scored: Sequence[tuple[float, int]]) -> float:
    """Perplexity of texts scored as (summed log-likelihood, tokens): per token over all of them."""
    return math.exp(-sum(lp for lp, _ in scored) / max(1, sum(n for _, n in scored)))


def mean_of(values: np.ndarray) -> Statistic:
    """The mean of per-question values over a resample's indices."""
    return lambda idx: float(values[idx].mean())


class Bootstrap:
    """Percentile bootstrap over questions: `reps` resamples drawn once, shared by everything scored with it, so
    two methods' difference is judged on paired resamples."""

    def __init__(self, queries: int, reps: int = 1000, seed: int = 0) -> None:
        self.samples = np.random.default_rng(seed).integers(0, queries, size=(reps, queries))

    def interval(self, statistic: Statistic) -> tuple[float, float]:
        values = np.array([statistic(idx) for idx in self.samples])
        low, high = np.percentile(values, [2.5, 97.5])
        return float(low), float(high)

    def difference_interval(self, a: Statistic, b: Statistic) -> tuple[float, float]:
        """95% interval of a - b on paired resamples."""
        return self.interval(lambda idx: a(idx) - b(idx))
