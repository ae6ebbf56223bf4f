"""Which questions a `pllm eval` run evaluates, and which disjoint ones its methods may learn from.

Training data never overlaps what is evaluated, by construction:
- LaMP files (--data): the train split when the folder has one (LaMP's protocol: train on train_*, evaluate on
  dev_*); otherwise a seeded third of the users is split off for training and the rest are evaluated.
- synthetic users (--synthetic): training users are other people, generated from another seed and named apart.
- MovieLens: users not evaluated train; with every user evaluated, a third is split off as with LaMP files.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

from pllm.bench.lamp import Question, by_user, item_key, load_dataset, shared_history
from pllm.bench.tasks.base import Task
from pllm.bench.tasks.movielens import RealUsers
from pllm.config import Settings
from pllm.errors import UsageError

TASK_NAMES = ("lamp1", "lamp2", "lamp3", "lamp4", "lamp5", "lamp7", "movielens-rating", "movielens-tag")
TRAIN_SHARE = 3  # without a train split, one user in this many trains and the rest are evaluated
TRAIN_SEED_OFFSET = 1000  # synthetic training users come from seed + this


@dataclass
class EvalData:
    evaluated: list[Question]
    train: list[Question]  # other users: what task adapters and learned weights may fit on (golds included)
    protocol: str  # one sentence for the report: where the training data came from


def low_data(data: EvalData, items: int) -> EvalData:
    """Every evaluated user keeps only their `items` most recent profile items from before their earliest evaluated
    query (the low-data users CDCDA is for); every method sees the same trimmed profiles. Training users keep theirs.
    """
    trimmed: list[Question] = []
    for qs in by_user(data.evaluated).values():
        history = shared_history(qs)
        dated = sorted(range(len(history)), key=lambda n: (str(history[n].get("date", "")), n))
        keep = {item_key(history[n]) for n in dated[len(dated) - items:]} if items else set()
        trimmed += [replace(q, profile=[i for i in q.profile if item_key(i) in keep]) for q in qs]
    return EvalData(trimmed, data.train, f"{data.protocol} Low-data users: each evaluated user keeps only their "
                                         f"{items} most recent profile items, for every method.")


def _users(questions: list[Question]) -> int:
    return len(by_user(questions))


def split_users(questions: list[Question], users: int | None, seed: int) -> tuple[list[Question], list[Question]]:
    """(evaluated, train): disjoint users, shuffled by `seed`. At least a third of the users train; `users` caps the
    evaluated ones."""
    names = sorted(by_user(questions))
    if len(names) < 2:
        raise UsageError("evaluation needs at least two users: one to train on and one to evaluate")
    random.Random(seed).shuffle(names)
    train_count = max(1, len(names) // TRAIN_SHARE)
    if users is not None:
        train_count = max(train_count, len(names) - users)
    train = set(names[:train_count])
    return [q for q in questions if q.user_id not in train], [q for q in questions if q.user_id in train]


def _split_note(evaluated: list[Question], train: list[Question], seed: int, why: str) -> str:
    return (f"{why}: {_users(train)} users were split off at random (seed {seed}) to train on, disjoint from the "
            f"{_users(evaluated)} evaluated users by construction.")


def limit_users(questions: list[Question], users: int | None, seed: int) -> list[Question]:
    groups = by_user(questions)
    if users is None or users >= len(groups):
        return questions
    keep = set(random.Random(seed).sample(sorted(groups), users))
    return [q for q in questions if q.user_id in keep]


def questions_for(task: Task, settings: Settings, *, data: Path | None, synthetic: str | None,
                  users: int | None, seed: int) -> EvalData:
    if isinstance(task, RealUsers):
        if synthetic:
            task.synthetic(seed, synthetic)  # refuses, saying why
        evaluated, train = split_users(task.load(data or settings.movielens_dir), users, seed)
        return EvalData(evaluated, train, _split_note(evaluated, train, seed, "MovieLens users"))
    if (data is None) == (synthetic is None):
        raise UsageError(f"{task.name} needs exactly one of --data DIR (LaMP files) or --synthetic SIZE")
    if synthetic:
        evaluated = limit_users(task.synthetic(seed, synthetic), users, seed)
        other = seed + TRAIN_SEED_OFFSET
        train = [replace(q, id=f"s{other}-{q.id}", user=f"s{other}-{q.user_id}")
                 for q in task.synthetic(other, synthetic)]
        return EvalData(evaluated, train, f"Training users: {_users(train)} synthetic users generated from seed "
                                          f"{other}, other people than the evaluated ones (seed {seed}).")
    assert data is not None
    dev, train_split = load_dataset(data, task.lamp)
    if train_split:
        evaluated = limit_users(dev, users, seed)
        return EvalData(evaluated, train_split, f"Training data: the folder's LaMP train split ({len(train_split)} "
                                                "questions); evaluated: its dev split.")
    evaluated, train = split_users(dev, users, seed)
    return EvalData(evaluated, train, _split_note(evaluated, train, seed, "The folder has no LaMP train split"))
