"""rag: retrieval-augmented personalization as LaMP does it: the k profile items most relevant to the query
(BM25 and recency fused, pllm's own retriever) go into the prompt as examples of what this user did.

Where the labels are the user's own past outputs (a tag set, LaMP-2 and MovieLens tags), the retrieved items also
vote, kNN-LM style (Khandelwal et al. 2020): a label's score is the log of its neighbours' votes times the user's
label prior, plus the model's calibrated score with a weight learned per run on held-out data from the users' own
past (their latest profile items, answered from the items before them), never on an evaluated gold. A 135M model
does not know what "visually appealing" or "in netflix queue" means to this user; the user's neighbours do.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pllm.bench.lamp import Question
from pllm.bench.methods.base import Env, Method, choose_label, label_scores, register_method, write_answer
from pllm.personal.retrieve import Item, RetrievalConfig, Retriever

K = 3  # items in the prompt
VOTE_K = 5  # neighbours whose labels vote
VOTE_FLOOR = 0.05  # a label no neighbour gave keeps this share, so the prior and the model can still pick it
HELD_OUT = 2  # latest profile items per user that tune the model's weight
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
    hits = Retriever(items).search(task.content(q), RetrievalConfig(k=k, budget_tokens=10_000))
    return [(q.profile[int(h.item.key)], h.score) for h in hits]


def nearest_items(task: Any, q: Question, k: int) -> list[dict[str, Any]]:
    """The k profile items most relevant to q, most relevant first."""
    return [item for item, _ in neighbours(task, q, k)]


def votes_apply(task: Any, q: Question) -> bool:
    """Neighbours can vote where the labels are what users gave their items (tags), not ratings or references."""
    return task.kind == "classification" and task.option_texts(q) == task.labels(q)


def vote_scores(task: Any, q: Question) -> list[float]:
    """Per label: log(neighbours' share of the votes, floored) + log(the user's label prior, Laplace-smoothed)."""
    labels = task.labels(q)
    votes: Counter[str] = Counter()
    for item, score in neighbours(task, q, VOTE_K):
        votes[task.item_output(item)] += score
    total = sum(votes.values()) or 1.0
    counts = Counter(task.item_output(item) for item in q.profile)
    seen = sum(counts[label] for label in labels) + len(labels)
    return [math.log(votes[label] / total + VOTE_FLOOR) + math.log((counts[label] + 1) / seen) for label in labels]


def held_out_questions(task: Any, questions: list[Question], per_user: int = HELD_OUT) -> list[Question]:
    """Each user's latest profile items as questions, the items before them as the profile: the user's own past to
    tune on, so no evaluated gold is ever read."""
    out = []
    for q in {q.user_id: q for q in questions}.values():
        dated = sorted(enumerate(q.profile), key=lambda pair: _created(pair[1], pair[0]))
        history = [item for _, item in dated]
        for n in range(max(2, len(history) - per_user), len(history)):
            text, gold = task.item_as_question(history[n], q)
            held = Question(id=f"{q.id}~{n}", input=text, profile=history[:n], gold=gold, user=q.user_id)
            if gold in task.labels(held):
                out.append(held)
    return out


@dataclass
class NeighbourVoting:
    """Chooses a label from the neighbours' votes, the user's prior and the model's scores (weight `model_weight`)."""

    model_weight: float = 0.0
    fitted: bool = False

    def fit(self, env: Env, questions: list[Question]) -> None:
        """Learn the model's weight on held-out questions (with whatever adapters are active, as at answer time)."""
        held = held_out_questions(env.task, questions)
        if not held:
            return
        rows = [(vote_scores(env.task, h), label_scores(env, h, prompt_items(env.task, h)),
                 env.task.labels(h).index(str(h.gold))) for h in held]

        def hits(weight: float) -> int:
            return sum(_best([v + weight * s for v, s in zip(votes, scores, strict=True)]) == gold
                       for votes, scores, gold in rows)

        self.model_weight = max(MODEL_WEIGHTS, key=lambda w: (hits(w), -w))
        self.fitted = True

    @property
    def learned(self) -> dict[str, float]:
        return {"model_weight": self.model_weight} if self.fitted else {}

    def choose(self, env: Env, q: Question, items: list[dict[str, Any]]) -> str:
        scores = vote_scores(env.task, q)
        if self.model_weight:
            scores = [v + self.model_weight * s for v, s in zip(scores, label_scores(env, q, items), strict=True)]
        return env.task.labels(q)[_best(scores)]


def _best(scores: list[float]) -> int:
    return max(range(len(scores)), key=scores.__getitem__)  # first of equals: labels come most used first


def prompt_items(task: Any, q: Question) -> list[dict[str, Any]]:
    return nearest_items(task, q, K)[::-1]  # the most relevant example sits closest to the query


@register_method
class RAG(Method):
    name = "rag"

    def prepare(self, questions: list[Question]) -> None:
        self.voting = NeighbourVoting()
        if questions and votes_apply(self.task, questions[0]):
            self.voting.fit(self.env, questions)

    @property
    def learned(self) -> dict[str, float]:
        return self.voting.learned

    def predict(self, q: Question) -> str:
        items = prompt_items(self.task, q)
        if self.task.kind == "generation":
            return write_answer(self.env, q, items)
        if votes_apply(self.task, q):
            return self.voting.choose(self.env, q, items)
        return choose_label(self.env, q, items)
