"""Pooling memory runs: per set and over all their questions, recall@k and the paired interval against BM25."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pllm.bench.memory_pool import main, pool
from pllm.errors import UsageError


def _run(folder: Path, ranks: list[tuple[int | None, int | None]]) -> Path:
    folder.mkdir()
    rows = [{"id": f"q{n}", "bm25": b, "pllm": p} for n, (b, p) in enumerate(ranks)]
    (folder / "results.json").write_text(json.dumps({"task": "memory", "ranks": rows}))
    return folder


def test_sets_are_pooled_question_by_question(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", [(1, 1), (None, 2), (5, 3), (None, None)])  # pllm finds 3 in the top 3, bm25 1
    b = _run(tmp_path / "b", [(2, 2), (1, 4)])
    result = pool([a, b])
    assert result["sets"]["a"]["pllm@3"] == 0.75 and result["sets"]["a"]["bm25@3"] == 0.25
    pooled = result["sets"]["pooled"]
    assert pooled["questions"] == 6 and pooled["pllm@3"] == round(4 / 6, 4) and pooled["bm25@3"] == 0.5
    assert pooled["pllm@3_ratio"] == round((4 / 6) / 0.5, 3)
    low, high = pooled["pllm@10_vs_bm25"]
    assert low <= (5 / 6 - 4 / 6) <= high


def test_the_report_is_written(tmp_path: Path, capsys: object) -> None:
    a = _run(tmp_path / "a", [(1, 1), (None, 2)])
    main([str(a), "--report", str(tmp_path / "out")])
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| **pooled** | 2 |" in text and "python -m pllm.bench.memory_pool" in text


def test_a_change_is_judged_on_the_same_questions(tmp_path: Path) -> None:
    after = _run(tmp_path / "after", [(1, 1), (None, 2), (5, 3)])
    before = _run(tmp_path / "before", [(1, 4), (None, 2), (5, None)])
    main([str(after), "--before", str(before), "--report", str(tmp_path / "out")])
    data = json.loads((tmp_path / "out" / "results.json").read_text())["against"]
    assert (data["after@3"], data["before@3"]) == (1.0, round(1 / 3, 4))
    low, high = data["after_vs_before@3"]
    assert 0 <= low <= high and high > 0  # never worse: only resamples without a changed question tie


def test_runs_that_cannot_be_compared_get_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                               ) -> None:
    after = _run(tmp_path / "after", [(1, 1), (None, 2)])
    other = _run(tmp_path / "other", [(1, 1)])
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text(json.dumps({"task": "memory"}))
    for argv, said in ([str(after), "--before", str(other)], "did not ask the same questions"), \
            ([str(after), "--before", str(after), str(other)], "one earlier run per run"), \
            ([str(tmp_path / "old")], "no per-question ranks"), ([str(tmp_path / "none")], "No such file"):
        with pytest.raises(SystemExit) as stopped:
            main([*argv, "--report", str(tmp_path / "out")])
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and said in err and err.count("\n") == 1
    with pytest.raises(UsageError):  # the library function raises; only the command line exits
        pool([tmp_path / "old"])
