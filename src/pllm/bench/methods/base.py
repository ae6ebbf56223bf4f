"""The Method interface, its registry, and the prompting every model-based method shares.

A method is prepared once per run (global statistics, a task adapter), fitted per user (a per-user adapter), and
asked to predict each of that user's queries. Label tasks choose among the allowed labels by their likelihood,
calibrated against a content-free input (contextual calibration, Zhao et al. 2021); generation tasks write.
Examples from the user's profile go in as earlier chat turns (input -> the user's own output), the in-context form
a small chat model follows best.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pllm.bench.lamp import Question
from pllm.bench.tasks.base import Task
from pllm.config import Settings
from pllm.errors import UsageError
from pllm.lm.runtime import GenerationConfig, Message, Runtime

SYSTEM = "You are a helpful assistant. Answer in the same way as in the earlier turns, if there are any."
ITEM_WORDS = 60  # profile item texts are cut to this many words in prompts
TUNE_QUESTIONS = 40  # training questions set aside to tune learned weights (at most half of them)


@dataclass
class Env:
    """What a method may use: the task, the settings, one shared runtime (loaded on first use)."""

    task: Task
    settings: Settings
    seed: int = 0
    train_questions: list[Question] = field(default_factory=list)  # users not evaluated, golds included
    max_train_steps: int | None = None  # caps every LoRA training (tests); None trains as the methods choose
    task_adapter: dict[str, Any] | None = None  # trained once per run, shared by the adapter methods
    head: Any = None  # the task head (methods/head.py), trained once per run, shared by the methods built on it
    progress: Callable[[str, int, int], None] = field(default=lambda *_: None, repr=False)  # (what, done, total)
    _runtime: Runtime | None = field(default=None, repr=False)
    content_free: dict[tuple[str, tuple[str, ...]], list[float]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # A seeded part of the training questions tunes learned weights; the task adapter never trains on it.
        picked = set(random.Random(self.seed).sample(range(len(self.train_questions)),
                                                     min(TUNE_QUESTIONS, len(self.train_questions) // 2)))
        self.tune_questions = [q for n, q in enumerate(self.train_questions) if n in picked]
        self.fit_questions = [q for n, q in enumerate(self.train_questions) if n not in picked]

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = Runtime.from_settings(self.settings)
        return self._runtime

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None


class Method:
    """One personalization method. Subclasses set `name` and override what they need."""

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]] = ("classification", "rating", "generation")
    uses_model: ClassVar[bool] = True
    builds_on: ClassVar[str] = ""  # a method this one extends: when both run, the report pairs them too

    def __init__(self, env: Env) -> None:
        self.env = env
        self.task = env.task

    def prepare(self, questions: list[Question]) -> None:
        """Once per run, with every evaluated question (golds removed) and `env.train_questions`."""

    def fit(self, user: str, history: list[dict[str, Any]]) -> None:
        """Once per user, before that user's queries, with what the user did before the earliest of them."""

    def predict(self, q: Question) -> str:
        raise NotImplementedError

    def finish(self) -> None:
        """After the last user: release what the method holds on the shared runtime."""

    @property
    def adapter_mb(self) -> float:
        """Size of the per-user state this method keeps (adapters), in MB."""
        return 0.0

    @property
    def learned(self) -> dict[str, float]:
        """What the method learned in `prepare` that a reader should see (a weight chosen on held-out data)."""
        return {}

    @property
    def cost(self) -> dict[str, float]:
        """What the method spent beyond the device, per user (the T-tier's requests, tokens, seconds)."""
        return {}


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    if cls.name in METHODS:
        raise ValueError(f"method {cls.name} is registered twice")
    METHODS[cls.name] = cls
    return cls


def get_methods(names: Sequence[str]) -> list[type[Method]]:
    # cycle: pllm.bench.methods/__init__ imports each method module, and each imports this one
    from pllm.bench import methods  # noqa: F401 - importing the package registers every method

    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise UsageError(f"unknown method {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    return [METHODS[n] for n in names]


# -- prompting shared by the model-based methods ---------------------------------------------------------------
def _cut(text: str, words: int = ITEM_WORDS) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def example_turns(task: Task, q: Question, items: Sequence[dict[str, Any]]) -> list[Message]:
    turns: list[Message] = []
    for item in items:
        question, answer = task.item_as_question(item, q)
        turns += [{"role": "user", "content": _cut(question, ITEM_WORDS + 40)},
                  {"role": "assistant", "content": answer}]
    return turns


def messages_for(task: Task, q: Question, items: Sequence[dict[str, Any]], text: str | None = None,
                 note: str = "") -> list[Message]:
    system = SYSTEM + (f"\n\n{note}" if note else "")
    return [{"role": "system", "content": system}, *example_turns(task, q, items),
            {"role": "user", "content": text if text is not None else q.input}]


def label_scores(env: Env, q: Question, items: Sequence[dict[str, Any]], *, note: str = "",
                 calibrate: bool = True) -> list[float]:
    """Log-likelihood of each allowed label's text as the answer, calibrated against the base model's own bias.

    The calibration input is content-free and carries no examples, no note and no adapter: it measures what the
    bare model prefers (SmolLM2 answers "1" to every rating question), not the user's preference that examples and
    adapters carry, which is the signal personalization is after.
    """
    rt, task = env.runtime, env.task
    options = task.option_texts(q)
    text = task.scoring_text(q)
    scores = rt.score_options(rt.chat_prompt(messages_for(task, q, items, text, note=note)), options)
    if calibrate:
        # The bare model, adapters off too: what the task or user adapter learned is signal, not bias to remove.
        # So it depends on the prompt alone, which repeats across a task's queries: scored once per run.
        free_prompt = rt.chat_prompt(messages_for(task, q, [], task.content_free(q)))
        key = (free_prompt, tuple(options))
        if key not in env.content_free:
            active = rt.active_adapters
            if active:
                rt.set_adapters({})
            env.content_free[key] = rt.score_options(free_prompt, options)
            if active:
                rt.set_adapters(active)
        scores = [s - f for s, f in zip(scores, env.content_free[key], strict=True)]
    return scores


def best_index(scores: Sequence[float]) -> int:
    """The index of the highest score; the first of equals (labels are listed most used first)."""
    return max(range(len(scores)), key=scores.__getitem__)


def label_prior(task: Task, q: Question) -> dict[str, float]:
    """The user's label distribution over q's labels, Laplace-smoothed so an unused label keeps a share."""
    labels = task.labels(q)
    counts = Counter(task.item_output(item) for item in q.profile)
    total = sum(counts[label] for label in labels) + len(labels)
    return {label: (counts[label] + 1) / total for label in labels}


def choose_label(env: Env, q: Question, items: Sequence[dict[str, Any]], *, note: str = "",
                 prior: dict[str, float] | None = None) -> str:
    labels = env.task.labels(q)
    scores = label_scores(env, q, items, note=note)
    if prior:
        scores = [s + math.log(prior.get(label, 0.0) + 1e-6) for s, label in zip(scores, labels, strict=True)]
    return labels[best_index(scores)]


def write_answer(env: Env, q: Question, items: Sequence[dict[str, Any]], *, note: str = "",
                 max_tokens: int = 40) -> str:
    rt = env.runtime
    prompt = rt.chat_prompt(messages_for(env.task, q, items, note=note))
    return rt.complete(prompt, GenerationConfig(max_tokens=max_tokens, stop=("\n",))).text.strip().strip('"')
