"""The recommender's baseline predictor on real MovieLens users: no model, the floor a personal rating method must
clear besides the user's own mean."""

from __future__ import annotations

from pllm.bench.data import questions_for
from pllm.bench.methods.base import Env
from pllm.bench.methods.stats import Biases, ProfileStats
from pllm.bench.metrics import mae
from pllm.bench.tasks.base import get_task
from pllm.config import get_settings


def test_the_movies_biases_correct_the_users_mean_on_real_users() -> None:
    task, settings = get_task("movielens-rating"), get_settings()
    data = questions_for(task, settings, data=None, synthetic=None, users=40, seed=0)
    env = Env(task=task, settings=settings, train_questions=data.train)
    golds = [str(q.gold) for q in data.evaluated]
    answers = {}
    for method in (ProfileStats(env), Biases(env)):
        method.prepare(data.evaluated)
        answers[method.name] = [method.predict(q) for q in data.evaluated]
    assert sum(a != b for a, b in zip(answers["stats"], answers["biases"], strict=True)) >= len(golds) // 10
    assert mae(answers["biases"], golds) < mae(answers["stats"], golds)
