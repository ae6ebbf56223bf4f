"""coldstart: a user the model barely knows starts from the head of the training users most like them.

The training users are clustered by what they write (the mean of their items' hidden states, cosine k-means);
each cluster gets the population head fine-tuned on its members' items (`adapt_head`, pulled toward the population).
A new user is sent to the cluster nearest their first items, and with none yet, nearest the query itself (what
they just wrote is all that is known of them). As their items arrive, their own signal moves the answer as in
`task+user` (the correction fitted on the training users).

How many clusters (1 = no clusters: the population head) and how strong the pull are chosen on the training users,
out of fold: clusters and heads are built from the other folds' people, on the fold head that never saw the people
scored, and each scored question chooses its cluster from its person's two most recent earlier items and itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pllm.bench.lamp import Question
from pllm.bench.methods.base import register_method
from pllm.bench.methods.head import HeadMethod, TaskHead, covers, inputs, scorable_questions, user_history
from pllm.lm.embeddings import spherical_kmeans
from pllm.lm.head import Head, adapt_head, primary_score

CLUSTER_GRID = (1, 2, 4, 8)  # clusters of training users (1: the population head alone)
PULL_GRID = (1e-3, 1e-2, 1e-1)  # a cluster head's pull toward the population head (per item)
CHOICE_FOLDS = (0, 1)  # the cross-validation folds whose people score the choice
COLD_ITEMS = 2  # earlier items a scored training question chooses its cluster by (the cold regime)
KMEANS_ROUNDS = 25


def unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.asarray(v / np.where(norm == 0, 1.0, norm))


@dataclass
class Clusters:
    """Cluster centroids over what people write, and each cluster's head."""

    centroids: np.ndarray  # (k, d), unit
    heads: list[Head]

    def head_for(self, written: np.ndarray) -> Head:
        """The head of the cluster nearest the mean of `written` (hidden states of the user's texts)."""
        return self.heads[int(np.argmax(self.centroids @ unit(written.mean(0))))]


def build_clusters(base: Head, x: np.ndarray, hidden: np.ndarray, labels: np.ndarray, people: list[str], k: int,
                   pull: float, *, threads: int) -> Clusters:
    """Cluster the people of these rows by their mean hidden state; fine-tune `base` on each cluster's rows."""
    names = sorted(set(people))
    rows_of = {name: [n for n, p in enumerate(people) if p == name] for name in names}
    means = unit(np.stack([hidden[rows_of[name]].mean(0) for name in names]))
    if k <= 1 or len(names) < 2 * k:
        return Clusters(unit(hidden.mean(0))[None], [base])
    member = spherical_kmeans(means, k, iterations=KMEANS_ROUNDS)
    centroids = unit(np.stack([means[member == c].mean(0) for c in range(k)]))
    heads = []
    for c in range(k):
        rows = [n for name, m in zip(names, member, strict=True) if m == c for n in rows_of[name]]
        heads.append(adapt_head(base, x[rows], labels[rows], pull, threads=threads) if rows else base)
    return Clusters(centroids, heads)


@dataclass
class _Scored:
    row: int
    gold: str
    allowed: list[str]
    earlier: list[int]  # rows of the person's most recent profile items (at most COLD_ITEMS), as a new user's first


def choose_clusters(env: Any, th: TaskHead) -> tuple[int, float, dict[str, float]]:
    """(clusters, pull) that score best out of fold on the training users, and every grid point's score."""
    assert th.x is not None
    items, x = th.trained_on, th.x
    d = env.runtime.llm.n_embd()
    hidden = x[:, :d]
    labels = np.array([th.labels.index(i.label) for i in items])
    people = [i.person for i in items]
    scored: dict[int, list[_Scored]] = {f: [] for f in CHOICE_FOLDS}
    for q, n, allowed, history in scorable_questions(env, th.labels, items):
        if int(th.choice.fold[n]) in scored:
            scored[int(th.choice.fold[n])].append(_Scored(n, str(q.gold), allowed, history[-COLD_ITEMS:]))

    def score(k: int, pull: float) -> float:
        preds, golds = [], []
        for fold, cases in scored.items():
            if not cases:
                continue
            others = [n for n in range(len(items)) if int(th.choice.fold[n]) != fold]
            clusters = build_clusters(th.choice.fold_heads[fold], x[others], hidden[others], labels[others],
                                      [people[n] for n in others], k, pull,
                                      threads=env.settings.threads)
            for c in cases:
                head = clusters.head_for(hidden[[*c.earlier, c.row]])
                preds.append(th.read(head.log_probs(x[c.row][None])[0], c.allowed))
                golds.append(c.gold)
        return primary_score(preds, golds, th.kind) if golds else -math.inf

    grid = {(k, pull): score(k, pull) for k in CLUSTER_GRID for pull in (PULL_GRID if k > 1 else (math.inf,))}
    (k, pull), _ = max(grid.items(), key=lambda kv: (kv[1], -kv[0][0]))  # ties: fewer clusters
    return k, pull, {f"k={k} pull={p:g}": round(v, 4) for (k, p), v in grid.items() if math.isfinite(v)}


@register_method
class ColdStart(HeadMethod):
    """The cluster head of the training users most like this user, then their own signal as it arrives."""

    name = "coldstart"
    kinds = ("classification", "rating")
    builds_on = "task"
    user_side = "correction"

    def prepare(self, questions: list[Question]) -> None:
        super().prepare(questions)
        th = self.env.head
        assert th is not None and th.x is not None
        if self.name not in th.built:  # the clusters depend on the training users alone: built once per head
            k, pull, grid = choose_clusters(self.env, th)
            d = self.env.runtime.llm.n_embd()
            labels = np.array([th.labels.index(i.label) for i in th.trained_on])
            clusters = build_clusters(th.head, th.x, th.x[:, :d], labels, [i.person for i in th.trained_on], k, pull,
                                      threads=self.env.settings.threads)
            th.built[self.name] = (clusters, pull, grid)
        self.clusters, self.pull, self.grid = th.built[self.name]

    def predict(self, q: Question) -> str:
        th = self.env.head
        assert th is not None
        allowed = [label for label in self.task.labels(q) if label in th.labels]
        if not covers(allowed, self.task.labels(q)):
            return super().predict(q)
        x = inputs(self.env, [q.input])[0]
        d = self.env.runtime.llm.n_embd()
        history = user_history(self.env, q, self._history) if self._history else None
        written = np.vstack([history.x[:, :d], x[None, :d]]) if history is not None and len(history) else x[None, :d]
        head = self.clusters.head_for(written)
        if history is None or not len(history):
            return th.read(head.log_probs(x[None])[0], allowed)
        return self.answer_with(th, self.user_side, x, history, allowed, replace(q, profile=self._history), head=head)

    @property
    def learned(self) -> dict[str, float]:
        out = dict(super().learned)
        out |= {"clusters": float(len(self.clusters.heads)),
                "cluster_pull": self.pull if math.isfinite(self.pull) else -1.0,
                **{f"out-of-fold score, {point}": score for point, score in self.grid.items()}}
        return out
