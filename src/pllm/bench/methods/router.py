"""router: picks RAG, PEFT or both per user from how much data the user has (Salemi & Zamani 2024 found RAG
gains most with little data and PEFT gaining as data grows). Until the trainer lands it routes between the
methods available: retrieval for small profiles, the profile prior added for large ones."""

from __future__ import annotations

from typing import Any

from pllm.bench.lamp import Question
from pllm.bench.methods.base import Method, choose_label, register_method, write_answer
from pllm.bench.methods.rag import nearest_items
from pllm.bench.methods.stats import label_counts

LARGE = 20  # profile items from which a user counts as data-rich


@register_method
class Router(Method):
    name = "router"

    def fit(self, user: str, profile: list[dict[str, Any]]) -> None:
        self.route = "rag+prior" if len(profile) >= LARGE else "rag"

    def predict(self, q: Question) -> str:
        items = nearest_items(self.task, q, 3)[::-1]
        if self.task.kind == "generation":
            return write_answer(self.env, q, items)
        prior = None
        if self.route == "rag+prior":
            labels = self.task.labels(q)
            counts = label_counts(self.task, q.profile)
            total = sum(counts[label] for label in labels) + len(labels)
            prior = {label: (counts[label] + 1) / total for label in labels}
        return choose_label(self.env, q, items, prior=prior)
