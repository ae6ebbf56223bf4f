"""Retrieved neighbours vote on labels (rag.NeighbourVoting); the model's weight is tuned on training users only."""

from __future__ import annotations

import json
from dataclasses import replace

from typer.testing import CliRunner

from pllm.bench.lamp import Question, by_user, shared_history
from pllm.bench.methods.base import Env
from pllm.bench.methods.rag import VOTE_K, NeighbourVoting, neighbours, vote_scores, votes_apply
from pllm.bench.methods.stats import ProfileStats
from pllm.bench.tasks.base import get_task
from pllm.bench.tasks.lamp2 import INSTRUCTION
from pllm.cli import app
from pllm.config import Settings


def _question(profile: list[tuple[str, str]], text: str) -> Question:
    items = [{"id": str(n), "description": d, "tag": t, "date": f"2024-01-{n + 1:02d}"}
             for n, (d, t) in enumerate(profile)]
    return Question(id="q", input=INSTRUCTION.format(tags="comedy, sci-fi, romance") + text, profile=items,
                    gold="sci-fi", user="u")


def test_the_nearest_items_outvote_the_most_used_tag() -> None:
    task = get_task("lamp2")
    q = _question([("A wedding in Paris goes wrong.", "comedy"), ("A clown loses his job.", "comedy"),
                   ("Two cousins start a bakery.", "comedy"), ("Astronauts find an alien signal on Mars.", "sci-fi")],
                  "Astronauts on Mars lose contact with Earth.")
    assert votes_apply(task, q)
    scores = vote_scores(task, q, neighbours(task, q, VOTE_K))
    assert task.labels(q)[scores.index(max(scores))] == "sci-fi"
    assert ProfileStats(Env(task=task, settings=Settings())).predict(q) == "comedy"  # the most used tag
    # Nothing retrieved (no shared words): the user's prior decides.
    far = replace(q, input=INSTRUCTION.format(tags="comedy, sci-fi, romance") + "Zzz qqq.")
    far_scores = vote_scores(task, far, neighbours(task, far, VOTE_K))
    assert task.labels(far)[far_scores.index(max(far_scores))] == "comedy"


def test_the_weight_is_tuned_on_training_questions_the_task_adapter_never_sees() -> None:
    from pllm.bench.data import questions_for
    from pllm.bench.methods.adapters import task_examples

    task, settings = get_task("lamp2"), Settings()
    data = questions_for(task, settings, data=None, synthetic="small", users=None, seed=0)
    env = Env(task=task, settings=settings, train_questions=data.train)
    assert env.tune_questions and env.fit_questions
    assert {q.id for q in env.tune_questions}.isdisjoint({q.id for q in env.fit_questions})
    evaluated_users = {q.user_id for q in data.evaluated}
    assert all(q.user_id not in evaluated_users for q in env.tune_questions)
    taught = {e.message_list()[-1]["content"] for e in task_examples(task, env)}
    # A tuning question reaches the adapter only where the same text is a profile item of its user's past.
    history = {task.item_as_question(item, qs[0])[0] for qs in by_user(data.train).values()
               for item in shared_history(qs)}
    assert taught & {q.input for q in env.tune_questions} <= history
    assert taught & {q.input for q in env.fit_questions}  # the other training questions are


def test_votes_beat_the_most_used_tag_on_real_movielens_users() -> None:
    task = get_task("movielens-tag")
    questions = task.load(Settings().movielens_dir)
    env = Env(task=task, settings=Settings())  # the model is never loaded: its weight is 0 here
    chooser, stats = NeighbourVoting(model_weight=0.0), ProfileStats(env)
    votes = sum(chooser.choose(env, q) == q.gold for q in questions)
    most_used = sum(stats.predict(q) == q.gold for q in questions)
    assert votes > most_used * 1.2, (votes, most_used)


def test_rag_learns_the_models_weight_on_training_users_and_beats_the_baselines() -> None:
    result = CliRunner().invoke(app, ["eval", "--task", "lamp2", "--synthetic", "small", "--methods", "stats,rag",
                                      "--json"])
    assert result.exit_code == 0, result.output
    methods = json.loads(result.stdout)["methods"]
    rag = methods["rag"]
    assert rag["accuracy"] > methods["stats"]["accuracy"] and rag["accuracy"] > methods["none"]["accuracy"] * 1.3
    assert 0.0 <= rag["model_weight"] <= 1.0 and "model_weight" not in methods["none"]
