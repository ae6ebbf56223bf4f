"""rag: retrieval-augmented personalization as LaMP does it: the k profile items most relevant to the query
(BM25 and recency fused, pllm's own retriever) go into the prompt as examples of what this user did."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pllm.bench.lamp import Question
from pllm.bench.methods.base import Method, choose_label, register_method, write_answer
from pllm.personal.retrieve import Item, RetrievalConfig, Retriever

K = 3


def _created(item: dict[str, Any], position: int) -> float:
    date = item.get("date")
    if isinstance(date, str):
        try:
            return datetime.fromisoformat(date).timestamp()
        except ValueError:
            pass
    return float(position)  # undated profiles: later in the list counts as more recent


def nearest_items(task: Any, q: Question, k: int) -> list[dict[str, Any]]:
    """The k profile items most relevant to q, most relevant first."""
    items = [Item(str(n), task.item_content(item), _created(item, n)) for n, item in enumerate(q.profile)]
    hits = Retriever(items).search(task.content(q), RetrievalConfig(k=k, budget_tokens=10_000))
    return [q.profile[int(h.item.key)] for h in hits]


@register_method
class RAG(Method):
    name = "rag"
    k = K

    def predict(self, q: Question) -> str:
        items = nearest_items(self.task, q, self.k)[::-1]  # the most relevant example sits closest to the query
        if self.task.kind == "generation":
            return write_answer(self.env, q, items)
        return choose_label(self.env, q, items)
