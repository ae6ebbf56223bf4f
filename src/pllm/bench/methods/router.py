"""router: picks, per user, the method that user's own history shows works for them.

Salemi & Zamani (2024) measured retrieval gaining most on LaMP and per-user PEFT gaining as a user's data grows; no
published system chooses per user.

- Label and rating tasks: the candidates are the task head with the user's correction (`task+user`), the head's
  per-user adapter (`user-head`) and, where the labels are the users' own tags, the neighbours' votes (`rag`). Each
  answers the user's most recent earlier items from the items before them; the one that does best there answers the
  user's queries, and `task+user` (fitted on the population) wins ties and users with too little history to judge.
- Generation tasks: retrieval over the task adapter for users with little data, their own adapter as well
  (rag+peft) for data-rich users (training on a few items mostly memorises them).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pllm.bench.lamp import Question
from pllm.bench.methods.base import register_method
from pllm.bench.methods.head import HeadMethod, History, covers, user_history
from pllm.bench.methods.rag import NeighbourVoting, prompt_items
from pllm.lm.head import primary_score

LARGE = 20  # generation: profile items from which a user gets an adapter of their own
CHECKS = 4  # label tasks: the user's most recent earlier items each candidate is judged on, at most
ROUTES = ("task+user", "user-head", "rag")  # in order of preference on a tie


@register_method
class Router(HeadMethod):
    name = "router"

    def prepare(self, questions: list[Question]) -> None:
        super().prepare(questions)
        if self.task.kind == "generation":
            self.apply()  # the task adapter on, as the rag route answers
        self.voting = NeighbourVoting.for_run(self.env, questions)
        self.routes: dict[str, int] = {}

    @property
    def learned(self) -> dict[str, float]:
        out = dict(self.voting.learned if self.voting else {})
        return out | {f"users_routed_to_{route}": float(n) for route, n in sorted(self.routes.items())}

    def fit(self, user: str, history: list[dict[str, Any]]) -> None:
        super().fit(user, history)
        self.route = ""
        self._trained = False
        if self.task.kind == "generation":
            model_counts = self.voting is None or self.voting.model_weight > 0
            self.route = "rag+peft" if len(history) >= LARGE and model_counts else "rag"
            if self.route == "rag":
                self.apply()

    def predict(self, q: Question) -> str:
        if self.task.kind == "generation":
            if self.route == "rag+peft" and not self._trained:
                self.train_user_adapter(q, self._history)
                self._trained = True
            return self.answer(q, prompt_items(self.task, q))
        if not self.route:  # chosen at the first query: its instruction frames the user's items
            self.route = self.choose_route(q)
            self.routes[self.route] = self.routes.get(self.route, 0) + 1
        if self.route == "rag" and self.voting:
            return self.voting.choose(self.env, q)
        self.user_side = "adapter" if self.route == "user-head" else "correction"
        return super().predict(q)

    def choose_route(self, q: Question) -> str:
        """The candidate that answers the user's latest earlier items best from the items before each."""
        th = self.env.head
        assert th is not None
        history = user_history(self.env, q, self._history)
        checks = min(CHECKS, len(history) // 2)
        if checks == 0:
            return ROUTES[0]
        dated = sorted(self._history, key=lambda item: str(item.get("date", "")))
        answers: dict[str, list[str]] = {route: [] for route in ROUTES}
        golds = history.labels[-checks:]
        for n in range(len(history) - checks, len(history)):
            earlier: History = history.before(n)
            asked = replace(q, input=self.task.item_as_question(dated[n], q)[0], profile=dated[:n])
            allowed = [label for label in self.task.labels(asked) if label in th.labels]
            if not covers(allowed, self.task.labels(asked)):  # the head cannot judge: the votes where they apply
                return "rag" if self.voting else ROUTES[0]
            x = history.x[n]
            answers["task+user"].append(self.answer_with(th, "correction", x, earlier, allowed, asked))
            answers["user-head"].append(self.answer_with(th, "adapter", x, earlier, allowed))
            if self.voting:
                answers["rag"].append(self.voting.choose(self.env, asked))
        scores = {route: primary_score(given, golds, th.kind) for route, given in answers.items() if given}
        return max(scores, key=lambda route: (scores[route], -ROUTES.index(route)))
