"""The evaluation's protocol: training data disjoint from what is evaluated, per-user fits on the past only, and
intervals on every number."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pllm.bench.data import questions_for, split_users
from pllm.bench.lamp import Question, by_user, shared_history, write_outputs, write_questions
from pllm.bench.methods.base import Env
from pllm.bench.methods.stats import GlobalMajority
from pllm.bench.metrics import Bootstrap, score, statistics_of
from pllm.bench.tasks.base import get_task
from pllm.config import Settings
from pllm.errors import UsageError


def _users(questions: list[Question]) -> set[str]:
    return {q.user_id for q in questions}


def test_synthetic_training_users_are_other_people() -> None:
    task = get_task("lamp2")
    data = questions_for(task, Settings(), data=None, synthetic="small", users=None, seed=0)
    assert data.train and _users(data.train).isdisjoint(_users(data.evaluated))
    assert {q.id for q in data.train}.isdisjoint({q.id for q in data.evaluated})
    evaluated_profiles = {str(q.profile) for q in data.evaluated}
    assert all(str(q.profile) not in evaluated_profiles for q in data.train)  # generated apart, not renamed copies
    assert "seed 1000" in data.protocol


def _lamp_folder(folder: Path, questions: list[Question], split: str, nested: bool) -> None:
    where = folder / split if nested else folder
    where.mkdir(parents=True, exist_ok=True)
    write_questions(where / f"{split}_questions.json", questions)
    write_outputs(where / f"{split}_outputs.json", "LaMP_3", {q.id: str(q.gold) for q in questions})


@pytest.mark.parametrize("nested", [False, True])
def test_lamp_files_train_on_their_train_split(tmp_path: Path, nested: bool) -> None:
    task = get_task("lamp3")
    dev, train = task.synthetic(0, "small"), task.synthetic(5, "small")
    train = [replace(q, id=f"t{q.id}", user=f"t{q.user}") for q in train]
    _lamp_folder(tmp_path, dev, "dev", nested)
    _lamp_folder(tmp_path, train, "train", nested)
    data = questions_for(task, Settings(), data=tmp_path, synthetic=None, users=None, seed=0)
    assert [q.id for q in data.evaluated] == [q.id for q in dev]
    assert [q.id for q in data.train] == [q.id for q in train] and all(q.gold for q in data.train)
    assert "train split" in data.protocol


def test_without_a_train_split_users_are_split_disjointly(tmp_path: Path) -> None:
    task = get_task("lamp3")
    dev = task.synthetic(0, "medium")
    _lamp_folder(tmp_path, dev, "dev", nested=False)
    data = questions_for(task, Settings(), data=tmp_path, synthetic=None, users=None, seed=0)
    assert _users(data.train).isdisjoint(_users(data.evaluated))
    assert _users(data.train) | _users(data.evaluated) == _users(dev)
    assert len(_users(data.train)) >= len(_users(dev)) // 3
    assert "no LaMP train split" in data.protocol and "disjoint" in data.protocol
    capped = questions_for(task, Settings(), data=tmp_path, synthetic=None, users=2, seed=0)
    assert len(_users(capped.evaluated)) == 2 and _users(capped.train).isdisjoint(_users(capped.evaluated))
    with pytest.raises(UsageError, match="at least two users"):
        split_users([q for q in dev if q.user_id == dev[0].user_id], None, 0)


def test_movielens_evaluated_and_training_users_never_overlap() -> None:
    task = get_task("movielens-rating")
    data = questions_for(task, Settings(), data=None, synthetic=None, users=5, seed=0)
    assert len(_users(data.evaluated)) == 5 and len(_users(data.train)) > 100
    assert _users(data.train).isdisjoint(_users(data.evaluated))


def test_per_user_fits_see_only_what_came_before_the_earliest_query() -> None:
    """MovieLens tags: a later query's profile holds an earlier query's tag (its gold); the shared history does not."""
    task = get_task("movielens-tag")
    questions = task.load(Settings().movielens_dir)
    several = [qs for qs in by_user(questions).values() if len(qs) > 1]
    assert several
    leaked = 0
    for qs in several:
        history = shared_history(qs)
        assert history == [i for i in qs[0].profile if i in history] and len(history) <= len(qs[0].profile)
        earlier_answers = {q.id.split("-", 1)[1] for q in qs}  # the movies queried
        assert not any(item["id"].split("-")[1] in earlier_answers for item in history)
        leaked += any(item["id"].split("-")[1] in earlier_answers for item in qs[-1].profile)
    assert leaked  # the data does hold the leak this guards against
    # majority counts the shared histories: blinding the questions and dropping later items change nothing
    env = Env(task=task, settings=Settings())
    majority = GlobalMajority(env)
    majority.prepare([replace(q, gold=None) for q in questions])
    expected = sum((Counter(task.item_output(i) for i in shared_history(qs)) for qs in by_user(questions).values()),
                   start=Counter())
    assert majority.counts == expected


@pytest.mark.parametrize("kind, labels", [("classification", ["a", "b", "c", "d"]),
                                          ("rating", ["1", "2", "3", "4", "5"]),
                                          ("generation", ["the cat sat", "a dog ran", "rain in spain"])])
def test_bootstrap_statistics_match_the_metrics_and_bracket_them(kind: str, labels: list[str]) -> None:
    rng = random.Random(3)
    golds = [rng.choice(labels) for _ in range(60)]
    preds = [g if rng.random() < 0.6 else rng.choice(labels) for g in golds]
    stats = statistics_of(kind, preds, golds)
    full = np.arange(len(golds))
    metrics = score(kind, preds, golds)
    assert stats.keys() == metrics.keys()
    boot = Bootstrap(len(golds), seed=0)
    for name, value in metrics.items():
        assert stats[name](full) == pytest.approx(value, abs=1e-9)
        low, high = boot.interval(stats[name])
        assert low <= value <= high and high - low > 0
        subset = full[:20]
        assert stats[name](subset) == pytest.approx(score(kind, preds[:20], golds[:20])[name], abs=1e-9)
    primary = next(iter(metrics))
    assert boot.improvement_interval(stats[primary], stats[primary], primary) == (0.0, 0.0)
    worse = statistics_of(kind, [labels[0]] * len(golds), golds)
    low, high = boot.improvement_interval(stats[primary], worse[primary], primary)
    assert low > 0  # 60% right against a constant answer: these queries tell them apart
