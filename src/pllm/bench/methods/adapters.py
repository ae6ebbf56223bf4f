"""Methods built on LoRA adapters, trained with the on-device trainer (lm/train.py) and served by llama.cpp.

- task: OPPU's first stage: one LoRA per task, trained on labelled profile items of users *other than* the ones
  evaluated (never on gold outputs), shared by every user.
- peft: OPPU's second stage: one LoRA per user on that user's profile items, trained on top of the frozen task
  adapter; at answer time llama.cpp applies both (task + user), as pllm serves them.
- rag+peft: the user's adapter and retrieved examples in the prompt.
- continual: ASLS-style: the user's adapter is updated as their items arrive, in time order, each update
  starting from the last.
- cdcda: needs the T-tier's synthetic data (the cloud issue).
"""

from __future__ import annotations

import random
from dataclasses import asdict
from typing import Any

from pllm.bench.lamp import Question
from pllm.bench.methods.base import SYSTEM, Env, Method, NotAvailableYet, choose_label, register_method, write_answer
from pllm.bench.methods.rag import prompt_items
from pllm.lm.hardware import choose_train_dtype
from pllm.lm.train import Example, TrainConfig, train_lora

TASK_ITEMS = 240  # labelled items the task adapter trains on
TASK_STEPS = 36


def _examples(task: Any, q: Question, items: list[dict[str, Any]]) -> list[Example]:
    out = []
    for item in items:
        question, answer = task.item_as_question(item, q)
        out.append(Example.of([{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}], answer))
    return out


def _train(env: Env, examples: list[Example], steps: int, base: dict[str, Any] | None = None,
           init: dict[str, Any] | None = None) -> tuple[bytes, dict[str, Any]]:
    """Train, export for llama.cpp; returns (GGUF bytes, {"weights", "lora"} for stacking another adapter on)."""
    from pllm.lm.export import BaseShape, gguf_lora_bytes
    from pllm.lm.models import resolve_model

    model = resolve_model(env.settings)
    config = TrainConfig(steps=steps, lr=2e-3, seed=env.seed, threads=env.settings.threads,
                         dtype=choose_train_dtype(env.settings.train_dtype).dtype)
    result = train_lora(model, env.settings.paths, examples, config, base_adapter=base, init_adapter=init)
    lora = asdict(config.lora)
    return (gguf_lora_bytes(result.adapter, BaseShape.of_gguf(model.path), alpha=config.lora.alpha),
            {"weights": result.adapter, "lora": lora})


def user_steps(n: int) -> int:
    return max(8, min(24, round(3 * n / 8)))


class AdapterMethod(Method):
    """Shared: the task adapter (trained once per run, cached on the Env) and answering with adapters applied."""

    uses_task_adapter = True

    def prepare(self, questions: list[Question]) -> None:
        if self.uses_task_adapter and self.env.task_adapter is None:
            evaluated = {q.user_id for q in questions}
            train_users = [q for q in self.env.train_questions if q.user_id not in evaluated]
            if not train_users:  # LaMP files without other users: the other half of the users trains it
                ordered = sorted(evaluated)
                half = set(ordered[: len(ordered) // 2])
                train_users = [q for q in questions if q.user_id not in half]
            items = [(q, item) for q in {q.user_id: q for q in train_users}.values() for item in q.profile]
            random.Random(self.env.seed).shuffle(items)
            examples = [e for q, item in items[:TASK_ITEMS] for e in _examples(self.task, q, [item])]
            gguf, stacked = _train(self.env, examples, TASK_STEPS)
            self.env.runtime.load_adapter("task", gguf)
            self.env.task_adapter = stacked
        self._user_mb = 0.0

    def apply(self, user_adapter: bytes | None = None) -> None:
        runtime = self.env.runtime
        scales = {"task": 1.0} if self.uses_task_adapter else {}
        if user_adapter is not None:
            runtime.load_adapter("user", user_adapter)
            scales["user"] = 1.0
            self._user_mb = len(user_adapter) / 1e6
        runtime.set_adapters(scales)

    def answer(self, q: Question, items: list[dict[str, Any]]) -> str:
        if self.task.kind == "generation":
            return write_answer(self.env, q, items)
        return choose_label(self.env, q, items)

    @property
    def adapter_mb(self) -> float:
        return self._user_mb

    def finish(self) -> None:
        self.env.runtime.set_adapters({})
        self.env.runtime.unload_adapter("user")


@register_method
class TaskAdapter(AdapterMethod):
    name = "task"

    def fit(self, user: str, profile: list[dict[str, Any]]) -> None:
        self.apply()

    def predict(self, q: Question) -> str:
        return self.answer(q, [])


@register_method
class PerUserPEFT(AdapterMethod):
    name = "peft"
    with_rag = False

    def fit(self, user: str, profile: list[dict[str, Any]]) -> None:
        self._user = user
        self._gguf: bytes | None = None

    def predict(self, q: Question) -> str:
        if self._gguf is None:  # trained on the first query's profile: every query of a user shares it
            examples = _examples(self.task, q, q.profile)
            self._gguf, _ = _train(self.env, examples, user_steps(len(examples)), base=self.env.task_adapter)
            self.apply(self._gguf)
        return self.answer(q, prompt_items(self.task, q) if self.with_rag else [])


@register_method
class RagPEFT(PerUserPEFT):
    name = "rag+peft"
    with_rag = True


@register_method
class Continual(AdapterMethod):
    name = "continual"
    chunks = 3

    def fit(self, user: str, profile: list[dict[str, Any]]) -> None:
        self._gguf: bytes | None = None

    def predict(self, q: Question) -> str:
        if self._gguf is None:
            dated = sorted(q.profile, key=lambda item: str(item.get("date", "")))  # arrival order
            size = max(1, -(-len(dated) // self.chunks))
            state = None
            for start in range(0, len(dated), size):  # each update starts from the previous adapter
                examples = _examples(self.task, q, dated[start:start + size])
                self._gguf, state = _train(self.env, examples, user_steps(len(examples)),
                                           base=self.env.task_adapter, init=state)
            self.apply(self._gguf)
        return self.answer(q, [])


@register_method
class CDCDA(NotAvailableYet):
    name = "cdcda"
    needs = "the T-tier cloud service for synthetic data (the cloud issue)"

