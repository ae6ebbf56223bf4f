"""Run personalization methods side by side on one task and score them.

Every method sees the same questions; it is prepared once, fitted per user, and asked each of that user's queries.
The non-personalized model (`none`) always runs, since every gain is measured against it.

    result = run_eval(task, questions, ["stats", "rag"], settings)
    result.as_json()
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pllm.bench.lamp import Question
from pllm.bench.methods.base import Env, get_methods
from pllm.bench.metrics import PRIMARY, relative_gain
from pllm.bench.tasks.base import Task
from pllm.config import Settings
from pllm.errors import UsageError
from pllm.lm.hardware import choose_train_dtype, cpu_info

BASELINE = "none"


@dataclass
class MethodResult:
    name: str
    metrics: dict[str, float]
    predictions: dict[str, str]
    seconds_per_user: float
    adapter_mb: float
    per_user: dict[str, float]  # user -> primary metric
    relative_gain: dict[str, float | None] = field(default_factory=dict)
    learned: dict[str, float] = field(default_factory=dict)
    prepare_seconds: float = 0.0  # once per run: a task adapter, a weight fitted on held-out data


@dataclass
class EvalResult:
    task: Task
    questions: list[Question]
    methods: list[MethodResult]
    machine: dict[str, Any] = field(default_factory=dict)  # the CPU (model, flags) and the training precision

    @property
    def primary(self) -> str:
        return PRIMARY[self.task.kind]

    def method(self, name: str) -> MethodResult:
        return next(m for m in self.methods if m.name == name)

    def as_json(self) -> dict[str, Any]:
        return {
            "task": self.task.name,
            "primary_metric": self.primary,
            "users": len({q.user_id for q in self.questions}),
            "queries": len(self.questions),
            "machine": self.machine,
            "methods": {m.name: {**{k: round(v, 4) for k, v in m.metrics.items()},
                                 "relative_gain": _rounded(m.relative_gain.get(self.primary)),
                                 "seconds_per_user": round(m.seconds_per_user, 3),
                                 "prepare_seconds": round(m.prepare_seconds, 2),
                                 "adapter_mb": round(m.adapter_mb, 3), **m.learned}
                        for m in self.methods},
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


Tick = Callable[[str, int, int], None]  # (method, users done, users in all)


def by_user(questions: list[Question]) -> dict[str, list[Question]]:
    groups: dict[str, list[Question]] = defaultdict(list)
    for q in questions:
        groups[q.user_id].append(q)
    return dict(groups)


def run_eval(task: Task, questions: list[Question], method_names: list[str], settings: Settings, *, seed: int = 0,
             train_questions: list[Question] | None = None, tick: Tick = lambda *_: None) -> EvalResult:
    if not questions:
        raise UsageError("no questions to evaluate")
    if any(q.gold is None for q in questions):
        raise UsageError("every question needs a gold output to be scored")
    names = [BASELINE, *[n for n in method_names if n != BASELINE]]
    classes = get_methods(names)
    env = Env(task=task, settings=settings, seed=seed, train_questions=train_questions or [])
    # Methods see the evaluated questions without their golds, by construction: only the runner scores.
    gold_of = {q.id: str(q.gold) for q in questions}
    blind = [replace(q, gold=None) for q in questions]
    users = by_user(blind)
    results = []
    try:
        for cls in classes:
            if task.kind not in cls.kinds:
                continue
            method = cls(env)
            started = time.perf_counter()
            method.prepare(blind)
            prepared = time.perf_counter() - started
            predictions: dict[str, str] = {}
            seconds = []
            tick(cls.name, 0, len(users))
            for done, (user, qs) in enumerate(users.items(), start=1):
                started = time.perf_counter()
                method.fit(user, qs[0].profile)
                for q in qs:
                    predictions[q.id] = method.predict(q)
                seconds.append(time.perf_counter() - started)
                tick(cls.name, done, len(users))
            method.finish()
            metrics = task.evaluate([predictions[q.id] for q in questions], [gold_of[q.id] for q in questions])
            per_user = {u: task.evaluate([predictions[q.id] for q in qs],
                                         [gold_of[q.id] for q in qs])[PRIMARY[task.kind]] for u, qs in users.items()}
            results.append(MethodResult(cls.name, metrics, predictions, statistics.mean(seconds), method.adapter_mb,
                                        per_user, learned=method.learned, prepare_seconds=prepared))
    finally:
        env.close()
    base = results[0]
    for r in results:
        r.relative_gain = {k: relative_gain(v, base.metrics[k], k) for k, v in r.metrics.items()}
    choice = choose_train_dtype(settings.train_dtype)
    return EvalResult(task, questions, results, {"cpu": cpu_info().as_dict(), "train_dtype": choice.dtype})
