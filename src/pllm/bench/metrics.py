"""Metrics as LaMP defines them.

- classification (LaMP-1, LaMP-2, MovieLens tags): accuracy and macro-F1 over the labels that occur in the golds;
- rating (LaMP-3, MovieLens ratings): MAE and RMSE; an answer that does not parse as a rating counts as the valid
  rating farthest from the gold;
- generation (LaMP-4, 5, 7): ROUGE-1 and ROUGE-L F-measure (the `rouge-score` package, stemming on).

Every metric gets a 95% bootstrap interval over queries (`Bootstrap`): the same resamples for every method of a
run, so a gain over the baseline is judged on paired resamples.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from pllm import stats
from pllm.extras import extra
from pllm.stats import Statistic, mean_of

RATINGS = (1, 2, 3, 4, 5)


def accuracy(preds: Sequence[str], golds: Sequence[str]) -> float:
    return sum(p.strip() == g.strip() for p, g in zip(preds, golds, strict=True)) / len(golds) if golds else 0.0


def macro_f1(preds: Sequence[str], golds: Sequence[str]) -> float:
    """Mean F1 over the gold labels (sklearn's f1_score(average='macro', labels=set(golds)))."""
    labels = sorted({g.strip() for g in golds})
    if not labels:
        return 0.0
    f1s = []
    for label in labels:
        tp = sum(p.strip() == label and g.strip() == label for p, g in zip(preds, golds, strict=True))
        fp = sum(p.strip() == label and g.strip() != label for p, g in zip(preds, golds, strict=True))
        fn = sum(p.strip() != label and g.strip() == label for p, g in zip(preds, golds, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f1s) / len(f1s)


def parse_rating(text: str) -> int | None:
    match = re.search(r"\b([1-5])(?:\.0+)?\b", text)
    return int(match.group(1)) if match else None


def rating_errors(preds: Sequence[str], golds: Sequence[str]) -> list[float]:
    errors = []
    for p, g in zip(preds, golds, strict=True):
        gold = float(g)
        value = parse_rating(p)
        errors.append(abs(value - gold) if value is not None else max(abs(r - gold) for r in RATINGS))
    return errors


def mae(preds: Sequence[str], golds: Sequence[str]) -> float:
    errors = rating_errors(preds, golds)
    return sum(errors) / len(errors) if errors else 0.0


def rmse(preds: Sequence[str], golds: Sequence[str]) -> float:
    errors = rating_errors(preds, golds)
    return math.sqrt(sum(e * e for e in errors) / len(errors)) if errors else 0.0


def rouge_per_query(preds: Sequence[str], golds: Sequence[str]) -> dict[str, list[float]]:
    rouge_scorer = extra("rouge_score.rouge_scorer", "bench")

    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    scores = [scorer.score(g, p) for p, g in zip(preds, golds, strict=True)]
    return {"rouge-1": [s["rouge1"].fmeasure for s in scores], "rouge-L": [s["rougeL"].fmeasure for s in scores]}


def rouge(preds: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    return {name: sum(values) / max(1, len(values)) for name, values in rouge_per_query(preds, golds).items()}


def score(kind: str, preds: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    if kind == "classification":
        return {"accuracy": accuracy(preds, golds), "f1": macro_f1(preds, golds)}
    if kind == "rating":
        return {"mae": mae(preds, golds), "rmse": rmse(preds, golds)}
    if kind == "generation":
        return rouge(preds, golds)
    raise ValueError(f"unknown task kind {kind}")


PRIMARY = {"classification": "accuracy", "rating": "mae", "generation": "rouge-1"}
LOWER_IS_BETTER = {"mae", "rmse"}


def relative_gain(value: float, baseline: float, metric: str) -> float | None:
    """Improvement over the baseline as a fraction (positive is better, for error metrics too); None when the
    baseline is 0 and a fraction of it means nothing."""
    if baseline == 0:
        return 0.0 if value == 0 else None
    return (baseline - value) / baseline if metric in LOWER_IS_BETTER else (value - baseline) / baseline


def statistics_of(kind: str, preds: Sequence[str], golds: Sequence[str]) -> dict[str, Statistic]:
    """Each metric of `score(kind, ...)` as a function of which queries count (an index array, repeats allowed)."""
    if kind == "classification":
        pred = [p.strip() for p in preds]
        gold = [g.strip() for g in golds]
        names = sorted(set(pred) | set(gold))
        p_ids = np.array([names.index(p) for p in pred])
        g_ids = np.array([names.index(g) for g in gold])
        correct = (p_ids == g_ids).astype(float)

        def f1(idx: np.ndarray) -> float:  # macro over the gold labels present in the resample, as macro_f1
            p, g, hit = p_ids[idx], g_ids[idx], correct[idx].astype(bool)
            tp = np.bincount(g[hit], minlength=len(names))
            predicted, actual = np.bincount(p, minlength=len(names)), np.bincount(g, minlength=len(names))
            present = actual > 0
            return float(np.mean(2 * tp[present] / (predicted[present] + actual[present])))

        return {"accuracy": lambda idx: float(correct[idx].mean()), "f1": f1}
    if kind == "rating":
        errors = np.array(rating_errors(preds, golds))
        return {"mae": lambda idx: float(errors[idx].mean()),
                "rmse": lambda idx: float(np.sqrt((errors[idx] ** 2).mean()))}
    if kind == "generation":
        per_query = {name: np.array(values) for name, values in rouge_per_query(preds, golds).items()}
        return {name: mean_of(values) for name, values in per_query.items()}
    raise ValueError(f"unknown task kind {kind}")


class Bootstrap(stats.Bootstrap):
    """The shared bootstrap, with improvements in a metric's own direction."""

    def improvement_interval(self, method: Statistic, baseline: Statistic, metric: str) -> tuple[float, float]:
        """The method's improvement over the baseline in the metric's units (positive is better, for error metrics
        too), on paired resamples: an interval that excludes 0 is a difference these queries can tell apart."""
        if metric in LOWER_IS_BETTER:
            return self.difference_interval(baseline, method)
        return self.difference_interval(method, baseline)
