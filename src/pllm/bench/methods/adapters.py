"""Methods built on LoRA adapters, trained with the on-device trainer (lm/train.py) and served by llama.cpp.

- task: OPPU's first stage: one LoRA per task, trained on the training users' questions with their outputs and on
  their profile items (users disjoint from the evaluated ones; see bench/data.py), shared by every user.
- peft: OPPU's second stage: one LoRA per user on that user's history (the profile items before their earliest
  evaluated query), trained on top of the frozen task adapter; at answer time llama.cpp applies both (task + user),
  as pllm serves them.
- rag+peft: the user's adapter and retrieved examples in the prompt.
- continual: ASLS-style: the user's adapter is updated as their items arrive, in time order, each update
  starting from the last.
- cdcda: CDCDA-PLM: the user's real items seed the T-tier (through the privacy gate), which writes new ones; the
  device keeps those that pass its filters (personal/augment.py; for label tasks the user's real-only adapter must
  label a new item as it labels its seed, or give it the seed's label: `augment_label_check`; the item carries the
  seed's true label) and trains the user's adapter on real + synthetic (at most `synthetic_ratio` synthetic per
  real item). Against PLLM_CLOUD_URL when set, else the service on loopback.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

from pllm.bench.lamp import Question, by_user, shared_history
from pllm.bench.methods.base import SYSTEM, Env, Method, choose_label, register_method, write_answer
from pllm.bench.methods.rag import prompt_items
from pllm.cloud.server import serve_loopback
from pllm.errors import UsageError
from pllm.lm.adapter import Purpose, train_adapter, train_config
from pllm.lm.embeddings import need_embedder
from pllm.lm.train import Example
from pllm.personal.augment import AugmentConfig, RealItem, augment_items
from pllm.personal.privacy import PrivacyGate
from pllm.personal.remote import CloudClient

# The task adapter's recipe, from the diagnosis (docs/BENCHMARKS.md): 240 items for 36 steps learned the label prior
# (one rating for every review); 400 items over two epochs with the loss on the label alone read the input.
TASK_ITEMS = 400  # labelled examples the task adapter trains on
TASK_EPOCHS = 2.0
EVAL_GRANT = 1e9  # credits the eval's loopback T-tier grants its device


def _examples(task: Any, q: Question, items: list[dict[str, Any]]) -> list[Example]:
    out = []
    for item in items:
        question, answer = task.item_as_question(item, q)
        out.append(Example.of([{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}], answer))
    return out


def _train(env: Env, examples: list[Example], steps: int, base: dict[str, Any] | None = None,
           init: dict[str, Any] | None = None) -> tuple[bytes, dict[str, Any]]:
    """Train, export for llama.cpp; returns (GGUF bytes, {"weights", "lora"} for stacking another adapter on)."""
    if env.max_train_steps is not None:
        steps = min(steps, env.max_train_steps)
    # A label's loss alone: with its end-of-turn token half of every target is a token that is always the same.
    config = train_config(env.settings, Purpose.TASK, steps=steps, seed=env.seed,
                          target_end=env.task.kind == "generation")
    trained = train_adapter(env.settings, examples, config, base_adapter=base, init_adapter=init)
    return trained.gguf, trained.stacked()


MAX_USER_STEPS = 48


def user_steps(n: int) -> int:
    return max(8, min(24, round(3 * n / 8)))


def _user_steps(env: Env, n: int) -> int:
    """The per-user recipe's steps for `n` items, times the `user_step_factor` setting (a lever, measured)."""
    return max(1, round(env.settings.user_step_factor * user_steps(n)))


def task_examples(task: Any, env: Env) -> list[Example]:
    """The training users' questions with their outputs (LaMP's train split; not the tuning questions), then the
    profile items those users had before their first question, shuffled: TASK_ITEMS examples, none from an evaluated
    user and no tuning gold."""
    if not env.fit_questions:
        raise UsageError("the task adapter needs training users disjoint from the evaluated ones (see bench/data.py)")
    rng = random.Random(env.seed)
    asked = [Example.of([{"role": "system", "content": SYSTEM}, {"role": "user", "content": q.input}], str(q.gold))
             for q in env.fit_questions if q.gold is not None]
    rng.shuffle(asked)
    items = [(qs[0], item) for qs in by_user(env.train_questions).values() for item in shared_history(qs)]
    rng.shuffle(items)
    return (asked + [e for q, item in items[:TASK_ITEMS] for e in _examples(task, q, [item])])[:TASK_ITEMS]


class AdapterMethod(Method):
    """Shared: the task adapter (trained once per run, cached on the Env) and answering with adapters applied."""

    uses_task_adapter = True

    def prepare(self, questions: list[Question]) -> None:
        if self.uses_task_adapter and self.env.task_adapter is None:
            examples = task_examples(self.task, self.env)
            gguf, stacked = _train(self.env, examples, max(8, round(TASK_EPOCHS * len(examples) / 8)))
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

    def train_user_adapter(self, q: Question, history: list[dict[str, Any]]) -> bytes:
        """The user's own adapter on their history, on top of the task adapter, applied; its GGUF bytes."""
        examples = _examples(self.task, q, history)
        gguf, _ = _train(self.env, examples, _user_steps(self.env, len(examples)), base=self.env.task_adapter)
        self.apply(gguf)
        return gguf

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
    """The LoRA task adapter alone (OPPU's first stage). On label tasks it learned the label prior (docs/BENCHMARKS.md);
    `task` (methods/head.py) answers them with a head that reads the input, and uses this for generation."""

    name = "task-lora"

    def fit(self, user: str, history: list[dict[str, Any]]) -> None:
        self.apply()

    def predict(self, q: Question) -> str:
        return self.answer(q, [])


@register_method
class PerUserPEFT(AdapterMethod):
    name = "peft"
    with_rag = False

    def fit(self, user: str, history: list[dict[str, Any]]) -> None:
        self._history = history
        self._gguf: bytes | None = None

    def predict(self, q: Question) -> str:
        if self._gguf is None:  # trained at the first query (its instruction frames the items); every query shares it
            self._gguf = self.train_user_adapter(q, self._history)
        return self.answer(q, prompt_items(self.task, q) if self.with_rag else [])


@register_method
class RagPEFT(PerUserPEFT):
    name = "rag+peft"
    with_rag = True


@register_method
class Continual(AdapterMethod):
    name = "continual"
    chunks = 3

    def fit(self, user: str, history: list[dict[str, Any]]) -> None:
        self._history = history
        self._gguf: bytes | None = None

    def predict(self, q: Question) -> str:
        if self._gguf is None:
            dated = sorted(self._history, key=lambda item: str(item.get("date", "")))  # arrival order
            size = max(1, -(-len(dated) // self.chunks))
            state = None
            for start in range(0, len(dated), size):  # each update starts from the previous adapter
                examples = _examples(self.task, q, dated[start:start + size])
                self._gguf, state = _train(self.env, examples, _user_steps(self.env, len(examples)),
                                           base=self.env.task_adapter, init=state)
            self.apply(self._gguf)
        return self.answer(q, [])


@register_method
class CDCDA(PerUserPEFT):
    name = "cdcda"
    builds_on = "peft"  # the same adapter, with the T-tier's synthetic items added

    def __init__(self, env: Env) -> None:
        super().__init__(env)
        if not self.task.augmentable:
            raise UsageError(f"cdcda cannot run on {self.task.name}: the T-tier can only write items whose output is "
                             "a label or the text itself (lamp2, lamp3, lamp7, movielens-rating, movielens-tag)")

    def prepare(self, questions: list[Question]) -> None:
        super().prepare(questions)
        settings = self.env.settings
        self._services = ExitStack()
        if not settings.cloud_url:  # the T-tier on loopback, reached over HTTP all the same
            import tempfile
            from pathlib import Path

            state = Path(self._services.enter_context(tempfile.TemporaryDirectory(prefix="pllm-cdcda-")))
            # The eval's own service meters every request as any other does, but grants its one device enough for
            # the run: the default grant buys about five users' items, and the cost is reported, not rationed.
            service = settings.model_copy(update={"ledger_opening_grant": EVAL_GRANT})
            url, key = self._services.enter_context(serve_loopback(service, state, device="eval"))
            settings = settings.model_copy(update={"cloud_url": url, "cloud_key": key})
        self._cloud = CloudClient(settings, PrivacyGate(settings, None))
        self._embedder = need_embedder("augmentation")
        self._config = AugmentConfig.from_settings(settings, seed=self.env.seed)
        self._spent: Counter[str] = Counter()
        self._users = 0

    def predict(self, q: Question) -> str:
        if self._gguf is None:
            self._gguf = self._train_with_synthetic(q)
        return self.answer(q, [])

    def _train_with_synthetic(self, q: Question) -> bytes:
        task, history = self.task, self._history
        labelled = task.kind != "generation"
        real = [RealItem(task.item_content(item), task.item_output(item) if labelled else None, when=n)
                for n, item in enumerate(sorted(history, key=lambda i: str(i.get("date", ""))))]
        scorer = None
        if labelled:  # the user's own scorer: their adapter on real items only
            self.train_user_adapter(q, history)

            def scorer(text: str) -> str:
                asked, _ = task.item_as_question(task.item_from(text, None), q)
                return choose_label(self.env, replace(q, id=f"{q.id}-synthetic", input=asked), [])

        started = time.perf_counter()
        outcome = augment_items(self._cloud, task.augmentable, real, self._embedder, self._config, scorer=scorer)
        synthetic = [task.item_from(item.text, item.label) for item in outcome.kept]
        synthetic = synthetic[: int(self.env.settings.synthetic_ratio * len(history))]
        self._users += 1
        self._spent.update({**outcome.usage, "t_tier_seconds": round(outcome.seconds, 3),
                            "device_filter_seconds": round(time.perf_counter() - started - outcome.seconds, 3),
                            "proposed": outcome.report.proposed, "kept": outcome.report.kept,
                            "trained_on": len(synthetic),
                            **{f"dropped_{k}": v for k, v in outcome.report.dropped.items()}})
        real_examples = _examples(task, q, history)
        examples = real_examples + _examples(task, q, synthetic)
        # peft's passes over the real items and as many over the synthetic ones, times `augment_step_factor` (2 by
        # default: at 1 the new items were level with peft; with peft's own budget spread over more examples the
        # real items were seen half as often, MAE 0.71 against 0.58). The cap scales with both step levers.
        factor = self.env.settings.augment_step_factor
        steps = round(factor * _user_steps(self.env, len(real_examples)) * len(examples) / max(1, len(real_examples)))
        cap = round(factor * self.env.settings.user_step_factor * MAX_USER_STEPS)
        gguf, _ = _train(self.env, examples, min(steps, cap), base=self.env.task_adapter)
        self.apply(gguf)
        return gguf

    @property
    def cost(self) -> dict[str, float]:
        out = {k: round(v / max(1, self._users), 2) for k, v in sorted(self._spent.items())}
        kept = self._spent.get("kept", 0)
        if kept:  # what one kept synthetic item cost the T-tier
            tokens = self._spent.get("prompt_tokens", 0) + self._spent.get("completion_tokens", 0)
            out |= {"t_tier_seconds_per_kept_item": round(self._spent.get("t_tier_seconds", 0) / kept, 2),
                    "tokens_per_kept_item": round(tokens / kept, 1)}
        return out

    def finish(self) -> None:
        super().finish()
        self._services.close()

