"""`pllm eval --task cloud` on the real (small) T-model: answers scored against the routing set's references, the
paired difference, and the report."""

from __future__ import annotations

from pathlib import Path

from pllm.bench.cloud_answers import compare_t_models, write_cloud_report
from pllm.config import get_settings


def test_t_models_answer_the_general_questions_and_the_report_shows_them(tmp_path: Path) -> None:
    result = compare_t_models(get_settings(), ["gemma-3-270m", "gemma-3-270m"], max_tokens=16, limit=3)
    row = result["models"]["gemma-3-270m"]
    assert result["questions"] == 3 and len(row["answers"]) == 3 and any(row["answers"])
    assert 0.0 <= row["rougeL"] <= 1.0 and row["rougeL_interval"][0] <= row["rougeL"] <= row["rougeL_interval"][1]
    assert result["difference"]["interval"] == [0.0, 0.0]  # greedy: the same model answers the same twice
    report = write_cloud_report(result, tmp_path / "cloud", command="pllm eval --task cloud")
    text = report.read_text() if report.is_file() else (tmp_path / "cloud" / "report.md").read_text()
    assert result["question_texts"][0] in text and "ROUGE-L" in text
