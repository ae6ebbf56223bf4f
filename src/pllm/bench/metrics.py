"""Metrics as LaMP defines them.

- classification (LaMP-1, LaMP-2, MovieLens tags): accuracy and macro-F1 over the labels that occur in the golds;
- rating (LaMP-3, MovieLens ratings): MAE and RMSE; an answer that does not parse as a rating counts as the valid
  rating farthest from the gold;
- generation (LaMP-4, 5, 7): ROUGE-1 and ROUGE-L F-measure (the `rouge-score` package, stemming on).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

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


def rouge(preds: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    scores = [scorer.score(g, p) for p, g in zip(preds, golds, strict=True)]
    n = max(1, len(scores))
    return {"rouge-1": sum(s["rouge1"].fmeasure for s in scores) / n,
            "rouge-L": sum(s["rougeL"].fmeasure for s in scores) / n}


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
