"""`pllm eval --task routing` on a slice of the mixed set: the real vault, the real cloud on loopback with a real
expert, the real router; no personal question may reach the cloud, and the report is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from pllm.bench.routing import PERSONAL, mixed_set, run_routing, write_routing_report
from pllm.config import get_settings
from pllm.expert.registry import ExpertRegistry
from pllm.expert.train import ExpertResult


def test_the_mixed_set_is_big_enough_and_keeps_personal_questions_apart() -> None:
    questions = mixed_set(["cooking", "finance", "health", "it"])
    counts = {c: sum(q.category == c for q in questions) for c in (*PERSONAL, "domain", "general")}
    assert counts == {"personal": 40, "personal_heldout": 40, "personal_heldout2": 40, "personal_heldout3": 40,
                      "domain": 120, "general": 30}
    assert questions[0].correct("local") and not questions[0].correct("expert:cooking")
    assert questions[40].category == "personal_heldout" and not questions[40].correct("cloud")


@pytest.mark.slow
def test_routing_on_a_slice_keeps_every_personal_question_on_the_device(cooking_expert: ExpertResult,
                                                                          tmp_path: Path) -> None:
    settings = get_settings()
    ExpertRegistry(settings.paths.experts).register(cooking_expert.card, cooking_expert.adapter, [])
    result = run_routing(settings, max_tokens=24, limit=10)
    rows = result["rows"]
    assert {r["category"] for r in rows} == {*PERSONAL, "domain", "general"}
    assert result["personal_left_the_device"] == 0
    assert all(not r["left_the_device"] for r in rows if r["route"] == "local")  # local means nothing was sent
    assert all(r["left_the_device"] for r in rows if r["route"] != "local")
    assert result["categories"]["all"]["questions"] == len(rows)
    report = write_routing_report(result, tmp_path / "report", command="pllm eval --task routing")
    assert "| personal |" in report.read_text() and (tmp_path / "report" / "routing.png").is_file()
