"""Run personalization methods side by side on one task and score them.

Every method sees the same questions, without their golds (only the runner scores); it is prepared once (with the
training users' data), fitted per user on what that user did before their earliest evaluated query, and asked
each of that user's queries. The non-personalized model (`none`) always runs, since every gain is measured
against it. Every metric carries a 95% bootstrap interval over queries.

    result = run_eval(task, questions_for(task, settings, ...), ["stats", "rag"], settings)
    result.as_json()
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pllm.bench.data import EvalData
from pllm.bench.lamp import Question, by_user, shared_history
from pllm.bench.methods.base import Env, get_methods
from pllm.bench.metrics import PRIMARY, Bootstrap, relative_gain, statistics_of
from pllm.bench.tasks.base import Task
from pllm.config import Settings
from pllm.errors import UsageError
from pllm.lm.hardware import choose_train_dtype, cpu_info

BASELINE = "none"
# The simple methods every other is also compared with, paired on the same queries: a method that does not beat
# the user's own statistics or the task model trained on other people has not personalised anything.
REFERENCES = ("stats", "majority", "task")


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
    cost: dict[str, float] = field(default_factory=dict)  # per user, beyond the device (Method.cost)
    prepare_seconds: float = 0.0  # once per run: a task adapter, a weight fitted on the training users
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric -> 95% bootstrap interval
    improvement: tuple[float, float] = (0.0, 0.0)  # primary metric over the baseline, paired 95% interval
    builds_on: str = ""  # the method it extends (Method.builds_on)
    over_base: tuple[float, float] | None = None  # primary metric over `builds_on`, paired 95% interval
    versus: dict[str, tuple[float, float]] = field(default_factory=dict)  # over each reference method, paired

    def label_counts(self) -> dict[str, int]:
        """How often each answer was given (label tasks): a method that learned the prior gives one."""
        return dict(Counter(self.predictions.values()).most_common())


@dataclass
class EvalResult:
    task: Task
    questions: list[Question]
    methods: list[MethodResult]
    machine: dict[str, Any] = field(default_factory=dict)  # the CPU (model, flags) and the training precision
    protocol: str = ""  # where the training data came from, disjoint from what is evaluated

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
            "protocol": self.protocol,
            "methods": {m.name: {**{k: round(v, 4) for k, v in m.metrics.items()},
                                 "intervals": {k: [round(lo, 4), round(hi, 4)] for k, (lo, hi) in m.intervals.items()},
                                 "relative_gain": _rounded(m.relative_gain.get(self.primary)),
                                 "improvement_interval": [round(v, 4) for v in m.improvement],
                                 "seconds_per_user": round(m.seconds_per_user, 3),
                                 "prepare_seconds": round(m.prepare_seconds, 2),
                                 "adapter_mb": round(m.adapter_mb, 3), **m.learned,
                                 **({"cost_per_user": m.cost} if m.cost else {}),
                                 **({f"improvement_over_{m.builds_on}": [round(v, 4) for v in m.over_base]}
                                    if m.over_base else {}),
                                 "improvement_over": {k: [round(v, 4) for v in iv] for k, iv in m.versus.items()},
                                 **({"answers": m.label_counts()} if self.task.kind != "generation" else {})}
                        for m in self.methods},
            **({"gold_answers": dict(Counter(str(q.gold) for q in self.questions).most_common())}
               if self.task.kind != "generation" else {}),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


Tick = Callable[[str, int, int], None]  # (method, users done, users in all)


def run_eval(task: Task, data: EvalData, method_names: list[str], settings: Settings, *, seed: int = 0,
             max_train_steps: int | None = None, tick: Tick = lambda *_: None, shared: dict[str, Any] | None = None,
             baseline: bool = True) -> EvalResult:
    """`max_train_steps` caps every LoRA training of the run (tests use it; published tables never do). `shared`
    carries what is trained on the training users alone (the task head) from one run to the next on the same
    training data (a --history sweep), so it is trained once. `baseline=False` leaves out `none` (the zero-shot
    model: a sweep over the users' history sizes, where it never changes); gains are then over the first method."""
    questions = data.evaluated
    if not questions:
        raise UsageError("no questions to evaluate")
    if any(q.gold is None for q in questions):
        raise UsageError("every question needs a gold output to be scored")
    names = [BASELINE, *[n for n in method_names if n != BASELINE]] if baseline else list(method_names)
    classes = get_methods(names)
    if {q.user_id for q in questions} & {q.user_id for q in data.train}:
        raise UsageError("training and evaluated users overlap")
    env = Env(task=task, settings=settings, seed=seed, train_questions=data.train, max_train_steps=max_train_steps,
              progress=tick, head=(shared or {}).get("head"))
    # Methods see the evaluated questions without their golds, by construction: only the runner scores.
    gold_of = {q.id: str(q.gold) for q in questions}
    blind = [replace(q, gold=None) for q in questions]
    users = by_user(blind)
    results = []
    try:
        methods = [cls(env) for cls in classes if task.kind in cls.kinds]  # one not available yet refuses here
        if any(m.uses_model for m in methods):
            env.runtime  # noqa: B018 - loaded before any timing, so no method's seconds include the model load
        for method in methods:
            started = time.perf_counter()
            method.prepare(blind)
            prepared = time.perf_counter() - started
            predictions: dict[str, str] = {}
            seconds = []
            tick(method.name, 0, len(users))
            for done, (user, qs) in enumerate(users.items(), start=1):
                started = time.perf_counter()
                method.fit(user, shared_history(qs))
                for q in qs:
                    predictions[q.id] = method.predict(q)
                seconds.append(time.perf_counter() - started)
                tick(method.name, done, len(users))
            method.finish()
            metrics = task.evaluate([predictions[q.id] for q in questions], [gold_of[q.id] for q in questions])
            per_user = {u: task.evaluate([predictions[q.id] for q in qs],
                                         [gold_of[q.id] for q in qs])[PRIMARY[task.kind]] for u, qs in users.items()}
            results.append(MethodResult(method.name, metrics, predictions, statistics.mean(seconds), method.adapter_mb,
                                        per_user, learned=method.learned, cost=method.cost,
                                        prepare_seconds=prepared, builds_on=method.builds_on))
    finally:
        if shared is not None:
            shared["head"] = env.head
        env.close()
    _intervals(task, questions, gold_of, results, seed)
    choice = choose_train_dtype(settings.train_dtype)
    return EvalResult(task, questions, results, {"cpu": cpu_info().as_dict(), "train_dtype": choice.dtype},
                      protocol=data.protocol)


def _intervals(task: Task, questions: list[Question], gold_of: dict[str, str], results: list[MethodResult],
               seed: int) -> None:
    """Relative gains, and bootstrap intervals on resamples shared by every method (so gains are paired)."""
    golds = [gold_of[q.id] for q in questions]
    boot = Bootstrap(len(questions), seed=seed)
    stats = [statistics_of(task.kind, [r.predictions[q.id] for q in questions], golds) for r in results]
    primary = PRIMARY[task.kind]
    base, base_stats = results[0], stats[0]
    for r, stat in zip(results, stats, strict=True):
        r.relative_gain = {k: relative_gain(v, base.metrics[k], k) for k, v in r.metrics.items()}
        r.intervals = {k: boot.interval(stat[k]) for k in r.metrics}
        r.improvement = boot.improvement_interval(stat[primary], base_stats[primary], primary)
    by_name = {r.name: stat for r, stat in zip(results, stats, strict=True)}
    for r in results:
        if r.builds_on in by_name:
            r.over_base = boot.improvement_interval(by_name[r.name][primary], by_name[r.builds_on][primary], primary)
        r.versus = {ref: boot.improvement_interval(by_name[r.name][primary], by_name[ref][primary], primary)
                    for ref in REFERENCES if ref in by_name and ref != r.name}
