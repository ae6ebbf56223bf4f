"""LaMP files: read, validate (naming file, record and field), and write predictions LaMP's evaluator reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pllm.bench.lamp import FormatError, load_dataset, load_outputs, load_questions, write_outputs, write_questions
from pllm.bench.tasks.base import get_task


def test_round_trip(tmp_path: Path) -> None:
    questions = get_task("lamp2").synthetic(0, "small")
    write_questions(tmp_path / "dev_questions.json", questions)
    write_outputs(tmp_path / "dev_outputs.json", "LaMP_2", {q.id: str(q.gold) for q in questions})
    loaded, train = load_dataset(tmp_path, "LaMP_2")
    assert train == []
    assert [(q.id, q.input, q.gold, q.user) for q in loaded] == [(q.id, q.input, q.gold, q.user) for q in questions]


@pytest.mark.parametrize("records, message", [
    ({"id": 1}, "a questions file is a JSON list"),
    ([{"id": "7", "profile": []}], r"record 0: missing field 'input'"),
    ([{"id": "7", "input": "x", "profile": [{"description": "d"}]}],
     r"record 0 \(id 7\), profile item 0: needs fields description\+tag or title\+text\+category; has description"),
])
def test_malformed_questions_name_file_record_and_field(tmp_path: Path, records: object, message: str) -> None:
    path = tmp_path / "q.json"
    path.write_text(json.dumps(records))
    with pytest.raises(FormatError, match=message):
        load_questions(path, "LaMP_2")


def test_malformed_outputs_and_missing_golds(tmp_path: Path) -> None:
    bad = tmp_path / "dev_outputs.json"
    bad.write_text(json.dumps({"task": "LaMP_3", "golds": [{"id": "1"}]}))
    with pytest.raises(FormatError, match="gold 0: needs fields 'id' and 'output'"):
        load_outputs(bad)
    (tmp_path / "dev_questions.json").write_text(json.dumps([{"id": "1", "input": "x", "profile": []}]))
    bad.write_text(json.dumps({"task": "LaMP_3", "golds": []}))
    with pytest.raises(FormatError, match="no gold output for question id 1"):
        load_dataset(tmp_path, "LaMP_3")


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    path.write_text("[{oops")
    with pytest.raises(FormatError, match=r"q\.json:1: not valid JSON"):
        load_questions(path, "LaMP_3")
