"""The Task interface every benchmark implements, and the registry `pllm eval --task` reads.

A task knows its LaMP input template, its allowed labels (classification and rating tasks), how a profile item
reads in a prompt, what part of it retrieval should match, and how to make deterministic synthetic users whose
answers depend on who they are (so personalization can win and a non-personalized model must lose).
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from pllm.bench.lamp import Question
from pllm.bench.metrics import score
from pllm.errors import UsageError

SIZES = {  # users, queries per user, profile items per user
    "small": (4, 3, 12),
    "medium": (10, 10, 30),  # 100 queries: what the published tables use
    "large": (40, 10, 60),
}


class Task:
    """One benchmark task. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]  # the CLI name: lamp2, movielens-rating
    lamp: ClassVar[str]  # the LaMP task id its files carry: LaMP_2
    kind: ClassVar[str]  # classification | rating | generation
    instruction: ClassVar[str]  # the input template's fixed text
    # What the user's items are, for the T-tier that writes new ones (CDCDA); '' where it cannot (an output that
    # is not the item's label or the item itself, as a headline of an article).
    augmentable: ClassVar[str] = ""

    # -- what a question offers --------------------------------------------------------------------------------
    def labels(self, q: Question) -> list[str]:
        """The allowed answers (label tasks); [] for generation."""
        return []

    def option_texts(self, q: Question) -> list[str]:
        """What the model scores for each label (usually the label itself)."""
        return self.labels(q)

    def content(self, q: Question) -> str:
        """The part of the input that varies (retrieval matches on it): by default, what follows the instruction."""
        return q.input[len(self.instruction):] if q.input.startswith(self.instruction) else q.input

    def scoring_text(self, q: Question) -> str:
        """The user turn under which the labels' texts are scored (usually the input itself)."""
        return q.input

    def content_free(self, q: Question) -> str:
        """The input with its content replaced by 'N/A' (for contextual calibration)."""
        return q.input.replace(self.content(q), "N/A") if self.content(q) else q.input

    # -- what a profile item offers ------------------------------------------------------------------------------
    def item_content(self, item: dict[str, Any]) -> str:
        raise NotImplementedError

    def item_output(self, item: dict[str, Any]) -> str:
        raise NotImplementedError

    def item_text(self, item: dict[str, Any]) -> str:
        """How the item reads in a prompt (LaMP's per-task phrasing)."""
        raise NotImplementedError

    def item_as_question(self, item: dict[str, Any], like: Question) -> tuple[str, str]:
        """The item rephrased as an (input, output) pair of this task (for few-shot examples and training): the
        query's own instruction (tag list and all) followed by the item's content."""
        prefix = like.input[: len(like.input) - len(self.content(like))]
        return prefix + self.item_content(item), self.item_output(item)

    def item_from(self, content: str, output: str | None) -> dict[str, Any]:
        """A profile item built from a synthetic text and its label (CDCDA), in this task's fields."""
        raise NotImplementedError(f"{self.name} items cannot be written by the T-tier")

    # -- data ------------------------------------------------------------------------------------------------------
    def synthetic(self, seed: int, size: str) -> list[Question]:
        raise NotImplementedError

    def evaluate(self, preds: list[str], golds: list[str]) -> dict[str, float]:
        return score(self.kind, preds, golds)


class TitleTask(Task):
    """A title written for a text in the user's own style (LaMP-4 headlines, LaMP-5 paper titles)."""

    kind = "generation"
    content_field: ClassVar[str]  # the profile field holding the text ("text", "abstract")
    styles: ClassVar[list[str]]  # one per synthetic user, in turn

    def item_content(self, item: dict[str, Any]) -> str:
        return str(item[self.content_field])

    def item_output(self, item: dict[str, Any]) -> str:
        return str(item["title"])

    def item_text(self, item: dict[str, Any]) -> str:
        return f'"{item["title"]}" is the title for "{item[self.content_field]}"'

    def sample(self, rng: random.Random, style: str) -> tuple[str, str]:
        """One (text, title in `style`) pair."""
        raise NotImplementedError

    def synthetic(self, seed: int, size: str) -> list[Question]:
        rng = users_rng(seed, self.name)
        users, queries, items = size_of(size)
        out = []
        for u in range(users):
            style = self.styles[u % len(self.styles)]
            profile = []
            for n in range(profile_size(rng, items)):
                text, title = self.sample(rng, style)
                profile.append({"id": f"{u}-{n}", self.content_field: text, "title": title})
            for k in range(queries):
                text, title = self.sample(rng, style)
                out.append(Question(id=f"{self.lamp[-1]}{u:03d}{k:02d}", input=self.instruction + text,
                                    profile=profile, gold=title, user=f"user{u}"))
        return out


TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    if cls.name in TASKS:
        raise ValueError(f"task {cls.name} is registered twice")
    TASKS[cls.name] = cls
    return cls


def get_task(name: str) -> Task:
    # cycle: pllm.bench.tasks/__init__ imports each task module, and each imports this one
    from pllm.bench import tasks  # noqa: F401 - importing the package registers every task

    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; choose from {', '.join(sorted(TASKS))}")
    return TASKS[name]()


def size_of(size: str) -> tuple[int, int, int]:
    if size not in SIZES:
        raise UsageError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    return SIZES[size]


def profile_size(rng: random.Random, most: int) -> int:
    """Users differ in how much they have written: between a third of `most` and `most` items."""
    return rng.randint(max(2, most // 3), most)


def users_rng(seed: int, task: str) -> random.Random:
    """A generator seeded by (seed, task), so every task's users are reproducible on their own."""
    return random.Random(f"{seed}:{task}")
