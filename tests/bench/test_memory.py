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
# LoCoMo's format (a two-person conversation, evidence by turn), with a made-up conversation: LoCoMo itself is
# CC BY-NC and is not shipped
LOCOMO = Path(__file__).resolve().parents[1] / "data" / "locomo-small.json"


def test_token_f1_is_squads() -> None:
    assert token_f1("The $350,000 loan", "$350,000") == pytest.approx(2 / 3)
    assert token_f1("Capa Barsavi.", "capa barsavi") == 1.0
    assert token_f1("no idea", "Capa Barsavi") == 0.0


def test_histories_load_with_sessions_dates_and_questions(tmp_path: Path) -> None:
    (history,) = load_histories(SMALL)
    assert len(history.questions) == 3 and len({t.session for t in history.turns}) == 9
    assert all(q.evidence <= {t.session for t in history.turns} for q in history.questions)
    assert all(t.created_at > 1.6e9 for t in history.turns)  # dated from LongMemEval's session dates
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"question": "q"}]))
    with pytest.raises(FormatError, match="record 0: needs fields"):
        load_histories(bad)


def test_locomo_conversations_load_with_speakers_and_evidence_by_turn() -> None:
    (history,) = load_histories(LOCOMO)
    assert history.unit == "turn" and len(history.turns) == 8
    first = history.turns[0]
    assert (first.unit, first.speaker) == ("D1:1", "")
    assert first.content == "Ana: Hi Ben! What did you paint for the gallery show?"
    assert history.turns[1].speaker == "Ben"  # speaker_a is the user; the other person keeps their name
    assert history.turns[2].content.endswith("[shares a photo of a wooden fence]")
    assert history.turns[4].created_at - first.created_at > 30 * 86400  # sessions keep their dates
    evidence = [set(q.evidence) for q in history.questions]
    assert evidence == [{"D1:2"}, {"D2:2"}, {"D1:3", "D1:4"}]  # 'D2:02' and 'D1:3; D1:4' read as LoCoMo meant them
    assert history.left_out == 2  # the adversarial question, and one naming a turn that does not exist


def test_a_conversation_is_scored_by_its_answering_turns(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "--task", "memory", "--data", str(LOCOMO), "--methods", "bm25,pllm",
                                      "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["unit"], data["questions"], data["left_out"]) == ("turn", 3, 2)
    # Ben's answer never says 'paint': only pllm, which indexes a turn with the one it answers, ranks it in the top 3
    assert data["methods"]["pllm"]["recall@3"] == 1.0 > data["methods"]["bm25"]["recall@3"]
    # each question's rank per method (to pool sets), and what ingesting cost
    assert len(data["ranks"]) == 3 and all(r["pllm"] is not None and r["pllm"] <= 3 for r in data["ranks"])
    assert data["turns"] > 0 and data["ingest_seconds_per_1000_turns"] > 0


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
