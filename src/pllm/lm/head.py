"""A classification head on the frozen model's last hidden state: the task model for label and rating tasks.

Fine-tuned with LoRA on a few hundred labelled items, the 135M model learned the label prior and answered one rating
for every review (docs/BENCHMARKS.md, "Why the task adapter collapsed"). A linear head on the hidden state where
the model starts its answer reads the input instead: one llama.cpp pass per item (no backward pass, so it trains
on every labelled item there is, in seconds once the features are computed), a multinomial logistic regression
whose L2 strength and class weighting are chosen by cross-validation over people, never on evaluated ones.

    X = features(runtime, prompts)                              # (n, hidden) from llama.cpp
    choice = cross_validate(X, y, labels, groups, kind="rating")    # l2 and weighting by grouped k-fold
    head = fit_head(X, y, labels, choice.l2, choice.balanced)
    predict(head.log_probs(X_new), labels, choice.rule)           # for ratings: the median or the mean's label
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pllm.files import atomic_path
from pllm.lm.runtime import Runtime

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)  # penalty on the standardised weights, per item
FOLDS = 5


def features(runtime: Runtime, prompts: Sequence[str], *, cache: Path | None = None,
             on_item: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The last hidden state of each prompt under the runtime's current adapters, (n, hidden) float32.

    `cache` (a .npz) keeps computed rows by the prompt's hash and the model file, so a rerun over the same training
    items pays nothing; give it only for data that may be stored unencrypted (public training users)."""
    key = hashlib.sha256(f"{runtime.model.path.name}:{runtime.model.path.stat().st_size}:"
                         f"{sorted(runtime.active_adapters.items())}".encode()).hexdigest()[:12]
    known: dict[str, np.ndarray] = {}
    if cache is not None and cache.is_file():
        with np.load(cache) as stored:
            known = {k: stored[k] for k in stored.files}
    rows, fresh = [], 0
    for n, prompt in enumerate(prompts):
        name = f"{key}_{hashlib.sha256(prompt.encode()).hexdigest()[:24]}"
        if name not in known:
            known[name] = runtime.last_hidden_state(prompt).astype(np.float32)
            fresh += 1
        rows.append(known[name])
        if on_item:
            on_item(n + 1, len(prompts))
    if cache is not None and fresh:
        with atomic_path(cache, suffix=".npz") as partial:
            np.savez(partial, **known)  # type: ignore[arg-type]
    return np.stack(rows) if rows else np.zeros((0, runtime.llm.n_embd()), np.float32)


@dataclass
class Head:
    """Standardisation and a linear layer over `labels`; `log_probs` gives (n, len(labels))."""

    labels: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray  # (hidden, labels)
    bias: np.ndarray  # (labels,)
    l2: float = 0.0
    balanced: bool = False

    def logits(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.weight + self.bias

    def log_probs(self, x: np.ndarray) -> np.ndarray:
        return log_softmax(self.logits(x))


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


RULES = {"classification": ("argmax",), "rating": ("median", "mean")}


def expected_rating(log_probs: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """The mean of each row's distribution over numeric labels."""
    return np.exp(log_probs) @ np.array([float(label) for label in labels])


def nearest_label(values: np.ndarray, labels: Sequence[str]) -> list[str]:
    """The numeric label nearest each value (a rating of 4.4 is "4")."""
    numbers = np.array([float(label) for label in labels])
    return [labels[int(np.abs(numbers - v).argmin())] for v in values]


def predict(log_probs: np.ndarray, labels: Sequence[str], rule: str) -> list[str]:
    """Labels from (n, labels) log-probabilities: `argmax` the most likely; for ratings (labels in ascending
    order) `median`, the label that minimises the expected absolute error under the distribution, or `mean`, the
    label nearest its mean (better where a regularised head spreads its mass)."""
    if rule == "median":
        cdf = np.cumsum(np.exp(log_probs), axis=1)
        return [labels[min(len(labels) - 1, int(np.searchsorted(row, 0.5 * row[-1])))] for row in cdf]
    if rule == "mean":
        return nearest_label(expected_rating(log_probs, labels), labels)
    return [labels[int(i)] for i in log_probs.argmax(axis=1)]


def fit_head(x: np.ndarray, y: np.ndarray, labels: Sequence[str], l2: float, balanced: bool, *,
             iterations: int = 100, threads: int = 2, free: int = 0) -> Head:
    """Multinomial logistic regression on standardised features (L-BFGS, full batch). `y` holds label indices;
    `balanced` weighs each class by the inverse of its frequency, so a frequent label cannot win by its prior; the
    last `free` columns (a few features known to matter, beside hundreds of hidden-state ones) are not penalised."""
    import torch

    torch.set_num_threads(threads)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    inputs = torch.from_numpy(((x - mean) / scale).astype(np.float32))
    targets = torch.from_numpy(y.astype(np.int64))
    k = len(labels)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    class_weight = np.where(counts > 0, len(y) / (k * np.maximum(counts, 1)), 0.0) if balanced else np.ones(k)
    weights = torch.from_numpy(class_weight[y].astype(np.float32))
    weight = torch.zeros((x.shape[1], k), requires_grad=True)
    bias = torch.zeros(k, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=iterations, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure() -> Any:
        optimizer.zero_grad()
        losses = torch.nn.functional.cross_entropy(inputs @ weight + bias, targets, reduction="none")
        penalised = weight[: weight.shape[0] - free] if free else weight
        loss = (losses * weights).sum() / weights.sum() + l2 * (penalised**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return Head(list(labels), mean, scale, weight.detach().numpy().copy(), bias.detach().numpy().copy(), l2,
                balanced)


def adapt_head(head: Head, x: np.ndarray, y: np.ndarray, pull: float, *, iterations: int = 30,
               threads: int = 2) -> Head:
    """A per-user adapter of the head: its weights fine-tuned on one person's items (`x`, label indices `y`), held to
    the population's by an L2 pull of strength `pull` (per item), so a person with little data stays close to it."""
    import torch

    if len(y) == 0 or not math.isfinite(pull):
        return head
    torch.set_num_threads(threads)
    inputs = torch.from_numpy(((x - head.mean) / head.scale).astype(np.float32))
    targets = torch.from_numpy(y.astype(np.int64))
    w0, b0 = torch.from_numpy(head.weight.astype(np.float32)), torch.from_numpy(head.bias.astype(np.float32))
    weight, bias = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> Any:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(inputs @ weight + bias, targets)
        loss = loss + pull * (((weight - w0) ** 2).sum() + ((bias - b0) ** 2).sum())
        loss.backward()
        return loss

    optimizer.step(closure)
    return Head(head.labels, head.mean, head.scale, weight.detach().numpy().copy(), bias.detach().numpy().copy(),
                head.l2, head.balanced)


@dataclass
class HeadChoice:
    """What grouped cross-validation chose, and the out-of-fold log-probabilities under that choice (every training
    item scored by a head that never saw its person), for fitting what sits on top of the head."""

    l2: float
    balanced: bool
    rule: str  # how labels are read off the distribution (`predict`)
    score: float  # the primary metric, out of fold (higher is better: MAE enters negated)
    out_of_fold: np.ndarray
    fold: np.ndarray  # each item's fold
    fold_heads: dict[int, Head]  # the head trained without each fold
    grid: dict[str, float] = field(default_factory=dict)


def primary_score(preds: Sequence[str], golds: Sequence[str], kind: str) -> float:
    """Higher is better: accuracy, or minus the mean absolute error for ratings."""
    if kind == "rating":
        return -float(np.mean([abs(float(p) - float(g)) for p, g in zip(preds, golds, strict=True)]))
    return float(np.mean([p == g for p, g in zip(preds, golds, strict=True)]))


def folds_of(groups: Sequence[str], folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """A fold number per item; every item of one person in the same fold."""
    people = sorted(set(groups))
    rng = np.random.default_rng(seed)
    order = {p: int(i) % folds for i, p in zip(rng.permutation(len(people)), people, strict=True)}
    return np.array([order[g] for g in groups])


def cross_validate(x: np.ndarray, y: np.ndarray, labels: Sequence[str], groups: Sequence[str], *, kind: str,
                   grid: Sequence[float] = L2_GRID, threads: int = 2, seed: int = 0, free: int = 0) -> HeadChoice:
    """The L2 strength, class weighting and decision rule with the best out-of-fold primary metric, folds by
    person (by item when there are too few people to fold)."""
    people = len(set(groups))
    fold = folds_of(groups, min(FOLDS, people), seed) if people >= 2 else np.arange(len(y)) % min(FOLDS, len(y))
    golds = [labels[i] for i in y]
    best: HeadChoice | None = None
    scores: dict[str, float] = {}
    for balanced in (False, True):
        for l2 in grid:
            oof = np.zeros((len(y), len(labels)))
            heads = {}
            for f in np.unique(fold):
                train, held = fold != f, fold == f
                heads[int(f)] = fit_head(x[train], y[train], labels, l2, balanced, threads=threads, free=free)
                oof[held] = heads[int(f)].log_probs(x[held])
            for rule in RULES[kind]:
                score = primary_score(predict(oof, labels, rule), golds, kind)
                scores[f"l2={l2:g},{'balanced' if balanced else 'plain'},{rule}"] = round(score, 4)
                if best is None or score > best.score:
                    best = HeadChoice(l2, balanced, rule, score, oof, fold, heads)
    assert best is not None
    best.grid = scores
    return best
