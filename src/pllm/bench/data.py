"""Which questions a `pllm eval` run uses: LaMP files (--data), synthetic users (--synthetic), or MovieLens."""

from __future__ import annotations

import random
from pathlib import Path

from pllm.bench.lamp import Question, load_dataset
from pllm.bench.runner import by_user
from pllm.bench.tasks.base import Task
from pllm.bench.tasks.movielens import MovieLensRating, MovieLensTag
from pllm.config import Settings
from pllm.errors import UsageError

TASK_NAMES = ("lamp1", "lamp2", "lamp3", "lamp4", "lamp5", "lamp7", "movielens-rating", "movielens-tag")


def limit_users(questions: list[Question], users: int | None, seed: int) -> list[Question]:
    groups = by_user(questions)
    if users is None or users >= len(groups):
        return questions
    keep = set(random.Random(seed).sample(sorted(groups), users))
    return [q for q in questions if q.user_id in keep]


def questions_for(task: Task, settings: Settings, *, data: Path | None, synthetic: str | None,
                  users: int | None, seed: int) -> list[Question]:
    if isinstance(task, MovieLensRating | MovieLensTag):
        if synthetic:
            raise UsageError(f"{task.name} reads the real MovieLens data; drop --synthetic")
        return task.load(data or settings.movielens_dir, users=users, seed=seed)
    if (data is None) == (synthetic is None):
        raise UsageError(f"{task.name} needs exactly one of --data DIR (LaMP files) or --synthetic SIZE")
    questions = task.synthetic(seed, synthetic) if synthetic else load_dataset(data, task.lamp)  # type: ignore[arg-type]
    return limit_users(questions, users, seed)
