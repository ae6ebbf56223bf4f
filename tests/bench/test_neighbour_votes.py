"""Retrieved neighbours vote on labels (rag.NeighbourVoting): held-out data from the users' own past only."""

from __future__ import annotations

import json
from dataclasses import replace

from typer.testing import CliRunner

from pllm.bench.lamp import Question
from pllm.bench.methods.base import Env
from pllm.bench.methods.rag import VOTE_K, NeighbourVoting, held_out_questions, neighbours, vote_scores, votes_apply
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


def test_held_out_questions_come_from_the_profile_and_its_past_only() -> None:
    task = get_task("lamp2")
    questions = [replace(q, gold=None) for q in task.synthetic(0, "small")]  # evaluated golds are never read
    held = held_out_questions(task, questions)
    assert held and len(held) <= 2 * len({q.user_id for q in questions})
    for h in held:
        source = next(q for q in questions if q.user_id == h.user_id)
        n = int(h.id.rsplit("~", 1)[1])
        assert h.gold == task.item_output(source.profile[n])
        assert h.profile == source.profile[:n]  # only what came before the held-out item


def test_votes_beat_the_most_used_tag_on_real_movielens_users() -> None:
    task = get_task("movielens-tag")
    questions = task.load(Settings().movielens_dir)
    env = Env(task=task, settings=Settings())  # the model is never loaded: its weight is 0 here
    chooser, stats = NeighbourVoting(model_weight=0.0), ProfileStats(env)
    votes = sum(chooser.choose(env, q) == q.gold for q in questions)
    most_used = sum(stats.predict(q) == q.gold for q in questions)
    assert votes > most_used * 1.2, (votes, most_used)


def test_rag_learns_the_models_weight_on_held_out_data_and_beats_the_baselines() -> None:
    result = CliRunner().invoke(app, ["eval", "--task", "lamp2", "--synthetic", "small", "--methods", "stats,rag",
                                      "--json"])
    assert result.exit_code == 0, result.output
    methods = json.loads(result.stdout)["methods"]
    rag = methods["rag"]
    assert rag["accuracy"] > methods["stats"]["accuracy"] and rag["accuracy"] > methods["none"]["accuracy"] * 1.3
    assert 0.0 <= rag["model_weight"] <= 1.0 and "model_weight" not in methods["none"]
