"""router: picks RAG, PEFT or both per user from how much data the user has.

Salemi & Zamani (2024) measured retrieval gaining most on LaMP and per-user PEFT gaining as a user's data grows; no
published system chooses per user. Users with little data get retrieval over the task adapter (training on a few
items mostly memorises them); data-rich users get their own adapter as well (rag+peft). Where labels are the
users' own tags, the retrieved items also vote (rag.NeighbourVoting), the model's weight learned with the task
adapter on.
"""

from __future__ import annotations

from typing import Any

from pllm.bench.lamp import Question
from pllm.bench.methods.adapters import AdapterMethod
from pllm.bench.methods.base import register_method
from pllm.bench.methods.rag import NeighbourVoting, prompt_items

LARGE = 20  # profile items from which a user gets an adapter of their own


@register_method
class Router(AdapterMethod):
    name = "router"

    def prepare(self, questions: list[Question]) -> None:
        super().prepare(questions)
        self.apply()  # the task adapter on, as when the held-out weight is fitted and the rag route answers
        self.voting = NeighbourVoting.for_run(self.env, questions)

    @property
    def learned(self) -> dict[str, float]:
        return self.voting.learned if self.voting else {}

    def fit(self, user: str, history: list[dict[str, Any]]) -> None:
        # A user's adapter only pays where the model's scores count: not when the votes decide alone.
        model_counts = self.voting is None or self.voting.model_weight > 0
        self.route = "rag+peft" if len(history) >= LARGE and model_counts else "rag"
        self._history = history
        self._trained = False
        if self.route == "rag":
            self.apply()

    def predict(self, q: Question) -> str:
        if self.route == "rag+peft" and not self._trained:
            self.train_user_adapter(q, self._history)
            self._trained = True
        if self.voting:
            return self.voting.choose(self.env, q)
        return self.answer(q, prompt_items(self.task, q))
