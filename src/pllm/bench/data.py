"""Which questions a `pllm eval` run uses: LaMP files (--data), synthetic users (--synthetic), or MovieLens."""

from __future__ import annotations

import random
from pathlib import Path

from pllm.bench.lamp import Question, load_dataset
from pllm.bench.runner import by_user
from pllm.bench.tasks.base import Task
from pllm.bench.tasks.movielens import RealUsers
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
                  users: int | None, seed: int) -> tuple[list[Question], list[Question]]:
    """(the questions to evaluate, questions of other users that task adapters may train on)."""
    if isinstance(task, RealUsers):
        if synthetic:
            task.synthetic(seed, synthetic)  # refuses, saying why
        folder = data or settings.movielens_dir
        evaluated = task.load(folder, users=users, seed=seed)
        names = {q.user_id for q in evaluated}
        return evaluated, [q for q in task.load(folder) if q.user_id not in names]
    if (data is None) == (synthetic is None):
        raise UsageError(f"{task.name} needs exactly one of --data DIR (LaMP files) or --synthetic SIZE")
    if synthetic:  # other synthetic users of the same kind, from another seed
        return limit_users(task.synthetic(seed, synthetic), users, seed), task.synthetic(seed + 1000, synthetic)
    return limit_users(load_dataset(data, task.lamp), users, seed), []  # type: ignore[arg-type]
