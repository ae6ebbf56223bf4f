"""The packaged domains: each loads, its exam is big enough, and nothing shown to the T-model is in the exam."""

from __future__ import annotations

from pathlib import Path

import pytest

from pllm.errors import ExpertError
from pllm.expert.domains import load_domain, packaged_domains


def test_every_packaged_domain_loads_with_an_exam_kept_apart() -> None:
    names = packaged_domains()
    assert {"cooking", "finance", "health", "it"} <= set(names)
    for name in names:
        domain = load_domain(name)
        assert domain.name == name and len(domain.exam) >= 30 and domain.topics and domain.exam_source
        exam = {qa.question for qa in domain.exam}
        assert len(exam) == len(domain.exam), f"{name}: a question asked twice"
        assert not exam & {d.question for d in domain.demonstrations}, f"{name}: a demonstration is examined"
        assert not exam & set(domain.examples), f"{name}: a router example is examined (routing would look easy)"


def test_a_malformed_exam_names_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "knitting"
    folder.mkdir()
    (folder / "domain.json").write_text('{"name": "knitting", "title": "Knitting", "description": "yarn", '
                                        '"examples": ["How do I cast on?"]}')
    (folder / "topics.txt").write_text("casting on\n")
    (folder / "exam.jsonl").write_text('{"question": "q?", "answer": "a"}\n{"question": "no answer"}\n')
    with pytest.raises(ExpertError, match=r"exam.jsonl:2: expected"):
        load_domain(str(folder))
    with pytest.raises(ExpertError, match="no domain 'gardening'"):
        load_domain("gardening")
