"""The memory task: a real history into a real vault, questions asked through the real assistant, scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pllm.bench.lamp import FormatError
from pllm.bench.memory import load_histories, token_f1
from pllm.cli import app

SMALL = Path(__file__).resolve().parents[1] / "data" / "memory-small.json"


def test_token_f1_is_squads() -> None:
    assert token_f1("The $350,000 loan", "$350,000") == pytest.approx(2 / 3)
    assert token_f1("Capa Barsavi.", "capa barsavi") == 1.0
    assert token_f1("no idea", "Capa Barsavi") == 0.0


def test_histories_load_with_sessions_dates_and_questions(tmp_path: Path) -> None:
    (history,) = load_histories(SMALL)
    assert len(history.questions) == 3 and len({t.session for t in history.turns}) == 9
    assert all(q.answer_sessions <= {t.session for t in history.turns} for q in history.questions)
    assert all(t.created_at > 1.6e9 for t in history.turns)  # dated from LongMemEval's session dates
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"question": "q"}]))
    with pytest.raises(FormatError, match="record 0: needs fields"):
        load_histories(bad)


def test_questions_asked_in_sequence_through_the_assistant(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "--task", "memory", "--data", str(SMALL), "--methods",
                                      "bm25,pllm,answers", "--json", "--report", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["questions"] == 3 and list(data["methods"]) == ["bm25", "pllm"]
    pllm = data["methods"]["pllm"]
    assert pllm["recall@3"] >= 2 / 3  # the answering session is found for the questions of this history
    low, high = pllm["recall@3_interval"]
    assert low <= pllm["recall@3"] <= high
    assert 0 <= pllm["answer_f1"] <= 1 and pllm["seconds_per_question"] > 0
    assert all(a["answer"] for a in data["answers"])  # the real model answered every question
    assert not data["full_history_fits"]
    assert (tmp_path / "r" / "recall.png").stat().st_size > 5000
    assert "| pllm |" in (tmp_path / "r" / "report.md").read_text()


def test_bad_memory_runs_say_why_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    for args, message in [(["eval", "--task", "memory"], "needs --data FILE"),
                          (["eval", "--task", "memory", "--data", str(SMALL), "--methods", "magic"],
                           "unknown memory method magic"),
                          (["eval", "--task", "memory", "--data", str(tmp_path / "none.json")], "no such file")]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and message in result.stderr and result.stderr.count("\n") == 1
