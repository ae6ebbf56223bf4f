"""A domain an expert covers: its description and example questions (what the router compares a question with),
topics (what the T-model is asked to write about) and an exam (questions with reference answers the expert never
trains on). Packaged domains live in `domains/<name>/`; any folder with the same three files is one too.

    domain = load_domain("cooking")          # or load_domain("path/to/folder")
    domain.exam[0].question, domain.exam[0].answer
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from pllm.errors import ExpertError

PACKAGED = Path(__file__).with_name("domains")
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class QA:
    question: str
    answer: str


@dataclass(frozen=True)
class Domain:
    name: str
    title: str
    description: str
    examples: tuple[str, ...]  # questions of this domain, for the router
    topics: tuple[str, ...]  # what the T-model writes about
    exam: tuple[QA, ...]  # held out: never trained on
    exam_source: str  # where the exam came from, said in every report
    demonstrations: tuple[QA, ...] = ()  # show the T-model the form of a pair; neither trained on nor examined

    def profile_texts(self) -> list[str]:
        """The texts a question is compared with to see whether it belongs here."""
        return [self.description, *self.examples]


def packaged_domains() -> list[str]:
    return sorted(p.parent.name for p in PACKAGED.glob("*/domain.json"))


def read_qa_jsonl(path: Path) -> list[QA]:
    """{"question", "answer"} per line; a malformed line is a one-line error naming it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ExpertError(f"cannot read {path}: {exc.strerror or exc}") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(QA(str(row["question"]).strip(), str(row["answer"]).strip()))
        except (ValueError, KeyError, TypeError):
            raise ExpertError(f"{path}:{number}: expected a JSON object with \"question\" and \"answer\"") from None
    return out


def read_topics(path: Path) -> tuple[str, ...]:
    try:
        topics = tuple(t.strip() for t in path.read_text(encoding="utf-8").splitlines() if t.strip())
    except OSError as exc:
        raise ExpertError(f"cannot read topics file {path}: {exc.strerror or exc}") from None
    if not topics:
        raise ExpertError(f"{path} names no topics (one per line)")
    return topics


def load_domain(name_or_folder: str) -> Domain:
    """A packaged domain by name, or a folder holding domain.json, topics.txt and exam.jsonl."""
    folder = PACKAGED / name_or_folder if NAME.match(name_or_folder) else Path(name_or_folder)
    card = folder / "domain.json"
    if not card.is_file():
        known = ", ".join(packaged_domains())
        raise ExpertError(f"no domain {name_or_folder!r} (packaged: {known}; or a folder with domain.json)")
    try:
        raw = json.loads(card.read_text(encoding="utf-8"))
        name, title, description = str(raw["name"]), str(raw["title"]), str(raw["description"])
        examples = tuple(str(q) for q in raw["examples"])
        demonstrations = tuple(QA(str(d["question"]), str(d["answer"])) for d in raw.get("demonstrations", []))
    except (ValueError, KeyError, TypeError):
        raise ExpertError(f"{card}: expected name, title, description and examples") from None
    if not NAME.match(name):
        raise ExpertError(f"{card}: bad expert name {name!r} (lower-case letters, digits, '-' and '_')")
    exam = tuple(read_qa_jsonl(folder / "exam.jsonl"))
    if len(exam) < 10:
        raise ExpertError(f"{folder / 'exam.jsonl'} holds {len(exam)} questions: an exam needs at least 10")
    return Domain(name=name, title=title, description=description, examples=examples,
                  topics=read_topics(folder / "topics.txt"), exam=exam,
                  exam_source=str(raw.get("exam_source", "not stated")), demonstrations=demonstrations)
