"""Tasks: deterministic synthetic users with real per-user signal; MovieLens split by time per user."""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest

from pllm.bench.tasks.base import TASKS, get_task
from pllm.config import Settings
from pllm.errors import UsageError

SYNTHETIC = ["lamp1", "lamp2", "lamp3", "lamp4", "lamp5", "lamp7"]


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_users_are_deterministic(name: str) -> None:
    task = get_task(name)
    first, again, other = task.synthetic(0, "small"), task.synthetic(0, "small"), task.synthetic(1, "small")
    assert [(q.input, q.gold) for q in first] == [(q.input, q.gold) for q in again]
    assert [(q.input, q.gold) for q in first] != [(q.input, q.gold) for q in other]
    users = {q.user for q in first}
    assert len(users) == 4 and len(first) == 12
    for q in first:
        assert q.profile and q.gold
        if task.kind != "generation":
            assert q.gold in task.labels(q)
            for item in q.profile:
                assert task.item_output(item) in task.labels(q) or name == "lamp1"


def test_the_same_kind_of_movie_gets_different_tags_from_different_users() -> None:
    from pllm.bench.tasks.lamp2 import KINDS

    task = get_task("lamp2")
    questions = task.synthetic(0, "large")
    tags_by_kind = defaultdict(set)
    for q in questions:
        for kind, (templates, _) in KINDS.items():
            if any(t.split("{")[0] and t.split("{")[0] in q.input for t in templates):
                tags_by_kind[kind].add(q.gold)
    assert max(len(tags) for tags in tags_by_kind.values()) >= 3


def test_every_task_is_registered_and_unknown_names_are_refused() -> None:
    get_task("lamp1")
    assert {*SYNTHETIC, "movielens-rating", "movielens-tag"} <= set(TASKS)
    with pytest.raises(UsageError, match="unknown task 'lamp9'"):
        get_task("lamp9")


def test_movielens_rating_is_split_by_time() -> None:
    folder = Settings().movielens_dir
    questions = get_task("movielens-rating").load(folder, users=5, seed=3)
    ratings = defaultdict(dict)
    with (folder / "ratings.csv").open() as f:
        for r in csv.DictReader(f):
            ratings[r["userId"]][r["movieId"]] = int(r["timestamp"])
    assert len({q.user for q in questions}) == 5
    for q in questions:
        user, movie = q.id.split("-")
        asked_at = ratings[user][movie]
        for item in q.profile:
            assert ratings[user][item["id"].split("-")[1]] <= asked_at
        assert q.gold in {"1", "2", "3", "4", "5"}


def test_movielens_tags_come_from_the_users_own_past_vocabulary() -> None:
    task = get_task("movielens-tag")
    questions = task.load(Settings().movielens_dir)
    assert len({q.user for q in questions}) >= 10
    for q in questions:
        assert q.gold in task.labels(q)
        assert q.gold in {task.item_output(i) for i in q.profile}
