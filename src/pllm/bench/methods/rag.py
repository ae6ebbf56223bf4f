"""rag: retrieval-augmented personalization as LaMP does it: the k profile items most relevant to the query
(BM25 and recency fused, pllm's own retriever) go into the prompt as examples of what this user did.

Where the labels are the user's own past outputs (a tag set, LaMP-2 and MovieLens tags), the retrieved items also
vote, kNN-LM style (Khandelwal et al. 2020): a label's score is the log of its neighbours' votes times the user's
label prior, plus the model's calibrated score with a weight learned per run on the training users' tuning
questions (Env.tune_questions: other people than the evaluated ones, never in the task adapter's data). A 135M model
does not know what "visually appealing" or "in netflix queue" means to this user; the user's neighbours do.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pllm.bench.lamp import Question
from pllm.bench.methods.base import (
    Env,
    Method,
    best_index,
    choose_label,
    label_prior,
    label_scores,
    register_method,
    write_answer,
)
from pllm.personal.retrieve import Item, RetrievalConfig, Retriever

K = 3  # items in the prompt
VOTE_K = 5  # neighbours whose labels vote
VOTE_FLOOR = 0.05  # a label no neighbour gave keeps this share, so the prior and the model can still pick it
MODEL_WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)  # candidates, smallest first: ties keep the model's share low


def _created(item: dict[str, Any], position: int) -> float:
    date = item.get("date")
    if isinstance(date, str):
        try:
            return datetime.fromisoformat(date).timestamp()
        except ValueError:
            pass
    return float(position)  # undated profiles: later in the list counts as more recent


def neighbours(task: Any, q: Question, k: int) -> list[tuple[dict[str, Any], float]]:
    """The k profile items most relevant to q with their fused retrieval scores, most relevant first."""
    items = [Item(str(n), task.item_content(item), _created(item, n)) for n, item in enumerate(q.profile)]
    # LaMP's profiles are a user's habits over time: the latest items count more (recency fused as a signal).
    hits = Retriever(items).search(task.content(q), RetrievalConfig(k=k, budget_tokens=10_000, recency_weight=0.5))
    return [(q.profile[int(h.item.key)], h.score) for h in hits]


def nearest_items(task: Any, q: Question, k: int) -> list[dict[str, Any]]:
    """The k profile items most relevant to q, most relevant first."""
    return [item for item, _ in neighbours(task, q, k)]


def votes_apply(task: Any, q: Question) -> bool:
    """Neighbours can vote where the labels are what users gave their items (tags), not ratings or references."""
    return task.kind == "classification" and task.option_texts(q) == task.labels(q)


def _prompt_from(near: list[tuple[dict[str, Any], float]]) -> list[dict[str, Any]]:
    return [item for item, _ in near[:K]][::-1]  # the most relevant example sits closest to the query


def prompt_items(task: Any, q: Question) -> list[dict[str, Any]]:
    """The K items that go into q's prompt."""
    return _prompt_from(neighbours(task, q, K))


def vote_scores(task: Any, q: Question, near: list[tuple[dict[str, Any], float]]) -> list[float]:
    """Per label: log(the neighbours' share of the votes, floored) + log(the user's label prior)."""
    votes: defaultdict[str, float] = defaultdict(float)
    for item, score in near:
        votes[task.item_output(item)] += score
    total = sum(votes.values()) or 1.0
    prior = label_prior(task, q)
    return [math.log(votes[label] / total + VOTE_FLOOR) + math.log(prior[label]) for label in task.labels(q)]


@dataclass
class NeighbourVoting:
    """Chooses a label from the neighbours' votes, the user's prior and the model's scores (weight `model_weight`)."""

    model_weight: float = 0.0
    fitted: bool = False

    @classmethod
    def for_run(cls, env: Env, questions: list[Question]) -> NeighbourVoting | None:
        """A chooser fitted for these questions, or None where their labels are not the users' own to vote on."""
        if not questions or not votes_apply(env.task, questions[0]):
            return None
        voting = cls()
        voting.fit(env)
        return voting

    def fit(self, env: Env) -> None:
        """Learn the model's weight on the tuning questions (with whatever adapters are active, as at answer time)."""
        held = [q for q in env.tune_questions if str(q.gold) in env.task.labels(q)]
        if not held:
            return
        rows = []
        for h in held:
            near = neighbours(env.task, h, VOTE_K)
            rows.append((vote_scores(env.task, h, near), label_scores(env, h, _prompt_from(near)),
                         env.task.labels(h).index(str(h.gold))))

        def hits(weight: float) -> int:
            return sum(best_index(_mixed(votes, scores, weight)) == gold for votes, scores, gold in rows)

        self.model_weight = max(MODEL_WEIGHTS, key=lambda w: (hits(w), -w))
        self.fitted = True

    @property
    def learned(self) -> dict[str, float]:
        return {"model_weight": self.model_weight} if self.fitted else {}

    def choose(self, env: Env, q: Question) -> str:
        near = neighbours(env.task, q, VOTE_K)
        scores = vote_scores(env.task, q, near)
        if self.model_weight:  # a weight of 0 leaves the model out: no need to run it
            scores = _mixed(scores, label_scores(env, q, _prompt_from(near)), self.model_weight)
        return env.task.labels(q)[best_index(scores)]


def _mixed(votes: list[float], scores: list[float], weight: float) -> list[float]:
    return [v + weight * s for v, s in zip(votes, scores, strict=True)]


@register_method
class RAG(Method):
    name = "rag"

    def prepare(self, questions: list[Question]) -> None:
        self.voting = NeighbourVoting.for_run(self.env, questions)

    @property
    def learned(self) -> dict[str, float]:
        return self.voting.learned if self.voting else {}

    def predict(self, q: Question) -> str:
        if self.voting:
            return self.voting.choose(self.env, q)
        items = prompt_items(self.task, q)
        if self.task.kind == "generation":
            return write_answer(self.env, q, items)
        return choose_label(self.env, q, items)
