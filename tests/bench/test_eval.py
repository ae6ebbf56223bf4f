"""`pllm eval` end to end on the real model: methods side by side, the report, predictions re-scored."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pllm.bench.lamp import by_user, load_outputs
from pllm.bench.tasks.base import get_task
from pllm.cli import app

runner = CliRunner()


def test_rag_against_non_personalized_on_small_synthetic_users(tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = runner.invoke(app, ["eval", "--task", "lamp4", "--synthetic", "small", "--methods", "stats,rag",
                                 "--json", "--report", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["task"] == "lamp4" and list(data["methods"]) == ["none", "stats", "rag"]
    rag, none = data["methods"]["rag"], data["methods"]["none"]
    assert rag["rouge-1"] > none["rouge-1"] * 1.3  # personalization wins by 30% or more
    assert rag["relative_gain"] > 0.3
    low, high = rag["intervals"]["rouge-1"]
    assert low <= rag["rouge-1"] <= high and low < high  # a 95% bootstrap interval over the 12 queries
    assert rag["improvement_interval"][0] > 0  # paired against none: a gain these queries can tell apart
    assert "synthetic users generated from seed 1000" in data["protocol"]
    # Predictions are in LaMP's outputs format: read them back and score them again.
    task_id, golds = load_outputs(report / "golds.json")
    _, preds = load_outputs(report / "predictions-rag.json")
    assert task_id == "LaMP_4" and set(preds) == set(golds)
    rescored = get_task("lamp4").evaluate([preds[i] for i in golds], list(golds.values()))
    assert abs(rescored["rouge-1"] - rag["rouge-1"]) < 1e-3
    text = (report / "report.md").read_text()
    assert "| rag |" in text and "pllm eval --task lamp4" in text
    assert (report / "methods.png").stat().st_size > 5000 and (report / "gain_vs_profile.png").is_file()


def test_a_label_task_with_the_statistics_baselines() -> None:
    result = runner.invoke(app, ["eval", "--task", "lamp1", "--synthetic", "small", "--methods", "stats,majority,rag",
                                 "--json"])
    assert result.exit_code == 0, result.output
    methods = json.loads(result.stdout)["methods"]
    assert methods["rag"]["accuracy"] > methods["none"]["accuracy"] * 1.3
    assert 0 <= methods["majority"]["accuracy"] <= 1


def test_bad_names_and_files_exit_2_with_one_line(tmp_path: Path) -> None:
    cases = [
        (["eval", "--task", "lamp9", "--synthetic", "small"], "unknown task 'lamp9'"),
        (["eval", "--task", "lamp2", "--synthetic", "small", "--methods", "magic"], "unknown method magic"),
        (["eval", "--task", "lamp2"], "needs exactly one of --data"),
        (["eval", "--task", "lamp2", "--synthetic", "huge"], "unknown size 'huge'"),
        (["eval", "--task", "lamp4", "--synthetic", "small", "--methods", "cdcda"], "cdcda cannot run on lamp4"),
        (["eval", "--task", "movielens-rating", "--synthetic", "small"], "drop --synthetic"),
    ]
    (tmp_path / "dev_questions.json").write_text('[{"id": "1", "input": "x", "profile": [{"tag": "t"}]}]')
    (tmp_path / "dev_outputs.json").write_text('{"task": "LaMP_2", "golds": [{"id": "1", "output": "t"}]}')
    cases.append((["eval", "--task", "lamp2", "--data", str(tmp_path)], "profile item 0: needs fields"))
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1


def test_a_task_adapter_trained_on_other_users() -> None:
    """The LoRA task adapter learns from synthetic users of another seed, never from the evaluated users' golds;
    twelve steps (a third of a published run's) already move the answers."""
    from pllm.bench.data import questions_for
    from pllm.bench.runner import run_eval
    from pllm.config import get_settings

    task, settings = get_task("lamp3"), get_settings()
    data = questions_for(task, settings, data=None, synthetic="small", users=2, seed=0)
    assert data.train and not set(by_user(data.train)) & set(by_user(data.evaluated))
    result = run_eval(task, data, ["task-lora"], settings, max_train_steps=12)
    assert [m.name for m in result.methods] == ["none", "task-lora"]
    assert result.method("task-lora").metrics["mae"] < result.method("none").metrics["mae"]


def test_the_task_model_reads_the_input_rather_than_answering_the_prior() -> None:
    """On a set whose golds are mixed, the task model (the head on the real model's hidden state, trained on other
    people) gives more than one answer, spread like the golds; here each user's own bias decides the score (the
    synthetic LaMP-3 users are built so), so the user's correction and the per-user adapter must beat it, paired;
    and the report compares every method with the simple references."""
    from pllm.bench.data import questions_for
    from pllm.bench.runner import run_eval
    from pllm.config import get_settings

    task, settings = get_task("lamp3"), get_settings()
    data = questions_for(task, settings, data=None, synthetic="medium", users=4, seed=0)
    golds = Counter(str(q.gold) for q in data.evaluated)
    assert len(golds) >= 3  # mixed
    result = run_eval(task, data, ["majority", "stats", "task", "task+user", "user-head", "router"], settings)
    answers = result.method("task").label_counts()
    assert len(answers) >= 3 and max(answers.values()) < 0.7 * len(data.evaluated)  # not one label for every query
    assert result.method("task").metrics["mae"] <= result.method("majority").metrics["mae"]
    for personal in ("task+user", "user-head", "router"):  # better than the task model, paired, outside the interval
        assert result.method(personal).versus["task"][0] > 0, personal
    body = result.as_json()
    assert body["gold_answers"] == dict(golds.most_common()) and body["methods"]["task"]["answers"] == answers
    assert set(body["methods"]["task+user"]["improvement_over"]) == {"stats", "majority", "task"}
    routed = body["methods"]["router"]
    assert sum(routed.get(f"users_routed_to_{route}", 0) for route in ("task+user", "user-head", "rag")) == 4


def test_methods_never_see_an_evaluated_gold() -> None:
    """Every evaluated gold replaced by a sentinel: the same predictions from every method, byte for byte (only the
    runner scores). Adapter methods train for real, one step each, so the test fits the suite; cdcda asks the
    T-tier on loopback for one new item from each of two seeds (sampled with a fixed seed, so both runs get the same
    items)."""
    from dataclasses import replace

    from pllm.bench.data import questions_for
    from pllm.bench.methods.base import METHODS, get_methods
    from pllm.bench.runner import run_eval
    from pllm.config import get_settings

    task, settings = get_task("lamp3"), get_settings().model_copy(update={"augment_per_seed": 1, "augment_seeds": 2})
    data = questions_for(task, settings, data=None, synthetic="small", users=1, seed=0)
    data = replace(data, evaluated=data.evaluated[:2])  # two: a gold of one query could still reach the other's answer
    get_methods([])  # registers them all
    methods = [n for n in METHODS if n != "none"]
    assert {"stats", "majority", "rag", "profile", "task", "peft", "rag+peft", "continual", "router",
            "cdcda"} <= set(methods)
    real = run_eval(task, data, methods, settings, max_train_steps=1)
    sentinel = replace(data, evaluated=[replace(q, gold="9") for q in data.evaluated])  # no method may answer 9
    blinded = run_eval(task, sentinel, methods, settings, max_train_steps=1)
    assert [m.name for m in real.methods] == ["none", *methods]
    for ours, theirs in zip(real.methods, blinded.methods, strict=True):
        assert ours.predictions == theirs.predictions, ours.name
        assert "9" not in ours.predictions.values()
    assert real.method("stats").metrics["mae"] < blinded.method("stats").metrics["mae"]  # scored on the sentinel
    spent = real.method("cdcda").cost
    assert spent["requests"] >= spent["proposed"] > 0  # the service drops empty texts and verbatim copies
    assert spent["trained_on"] <= spent["kept"] <= spent["proposed"]


def test_a_reports_command_names_the_cdcda_settings_changed_from_their_defaults(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pllm.bench.commands import CDCDA_SETTINGS, _changed_env
    from pllm.config import Settings

    assert _changed_env(Settings(), CDCDA_SETTINGS) == []
    changed = Settings(augment_label_check="as_seed", augment_keep_per_seed=2)
    assert _changed_env(changed, CDCDA_SETTINGS) == ["PLLM_AUGMENT_LABEL_CHECK=as_seed", "PLLM_AUGMENT_KEEP_PER_SEED=2"]
    # a band is written as the JSON its environment variable takes, and the step lever is named too
    changed = Settings(augment_similarity_band=(0.1, 0.99), augment_step_factor=1.0)
    env = _changed_env(changed, CDCDA_SETTINGS)
    assert env == ["PLLM_AUGMENT_SIMILARITY_BAND='[0.1, 0.99]'", "PLLM_AUGMENT_STEP_FACTOR=1.0"]
    name, value = env[0].split("=", 1)
    monkeypatch.setenv(name, value.strip("'"))
    assert Settings().augment_similarity_band == (0.1, 0.99)
