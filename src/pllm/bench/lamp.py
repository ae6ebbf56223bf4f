"""The LaMP file formats: questions in, golds in, predictions out (the same shape as golds, so LaMP's own
evaluator scores them).

    questions: [{"id", "input", "profile": [{...task fields..., "date"?}]}]
    outputs:   {"task": "LaMP_k", "golds": [{"id", "output"}]}

Profile fields per task: LaMP-1 title, abstract; LaMP-2 description, tag (movies) or title, text, category
(news); LaMP-3 text, score; LaMP-4 title, text; LaMP-5 title, abstract; LaMP-7 text. A malformed file raises
UsageError naming the file, the record and the field.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pllm.errors import UsageError

PROFILE_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    # task -> accepted field sets (a profile item must hold every field of one set)
    "LaMP_1": (("title", "abstract"),),
    "LaMP_2": (("description", "tag"), ("title", "text", "category")),
    "LaMP_3": (("text", "score"),),
    "LaMP_4": (("title", "text"),),
    "LaMP_5": (("title", "abstract"),),
    "LaMP_7": (("text",),),
}


@dataclass
class Question:
    """One query of one user, with that user's profile."""

    id: str
    input: str
    profile: list[dict[str, Any]]
    gold: str | None = None
    user: str = ""  # LaMP has one user per question; our synthetic and MovieLens sets name them
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def user_id(self) -> str:
        return self.user or self.id


def by_user(questions: list[Question]) -> dict[str, list[Question]]:
    groups: dict[str, list[Question]] = defaultdict(list)
    for q in questions:
        groups[q.user_id].append(q)
    return dict(groups)


def item_key(item: dict[str, Any]) -> str:
    return str(item["id"]) if "id" in item else json.dumps(item, sort_keys=True, ensure_ascii=False)


def shared_history(questions: list[Question]) -> list[dict[str, Any]]:
    """The profile items every one of a user's questions has: what the user did before their earliest evaluated
    query. Anything fitted once per user sees only these (a later query's profile may hold an earlier query's
    answer, as in MovieLens tags)."""
    first, *rest = questions
    keys = set.intersection({item_key(i) for i in first.profile}, *({item_key(i) for i in q.profile} for q in rest))
    return [item for item in first.profile if item_key(item) in keys]


class FormatError(UsageError):
    """A LaMP file that does not match the format."""


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise FormatError(f"{path}: not UTF-8 text") from None


def load_questions(path: Path, task: str) -> list[Question]:
    data = _load_json(path)
    if not isinstance(data, list):
        raise FormatError(f"{path}: a questions file is a JSON list of records")
    accepted = PROFILE_FIELDS[task]
    out = []
    for n, record in enumerate(data):
        where = f"{path}: record {n}"
        if not isinstance(record, dict):
            raise FormatError(f"{where}: not an object")
        for key in ("id", "input", "profile"):
            if key not in record:
                raise FormatError(f"{where}: missing field {key!r}")
        if not isinstance(record["input"], str):
            raise FormatError(f"{where} (id {record['id']}): field 'input' is not a string")
        if not isinstance(record["profile"], list):
            raise FormatError(f"{where} (id {record['id']}): field 'profile' is not a list")
        for m, item in enumerate(record["profile"]):
            if not isinstance(item, dict) or not any(all(f in item for f in fields) for fields in accepted):
                wanted = " or ".join("+".join(fields) for fields in accepted)
                have = ", ".join(item) if isinstance(item, dict) else type(item).__name__
                raise FormatError(f"{where} (id {record['id']}), profile item {m}: needs fields {wanted}; has {have}")
        out.append(Question(id=str(record["id"]), input=record["input"], profile=record["profile"],
                            user=str(record.get("user", ""))))
    return out


def load_outputs(path: Path) -> tuple[str, dict[str, str]]:
    """(task name, {id: gold output})."""
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("golds"), list) or not isinstance(data.get("task"), str):
        raise FormatError(f'{path}: an outputs file is {{"task": "LaMP_k", "golds": [{{"id", "output"}}]}}')
    golds = {}
    for n, gold in enumerate(data["golds"]):
        if not isinstance(gold, dict) or "id" not in gold or "output" not in gold:
            raise FormatError(f"{path}: gold {n}: needs fields 'id' and 'output'")
        golds[str(gold["id"])] = str(gold["output"])
    return data["task"], golds


def attach_golds(questions: list[Question], golds: dict[str, str], path: Path) -> None:
    for q in questions:
        if q.id not in golds:
            raise FormatError(f"{path}: no gold output for question id {q.id}")
        q.gold = golds[q.id]


def write_questions(path: Path, questions: list[Question]) -> None:
    records = [{"id": q.id, "input": q.input, "profile": q.profile, **({"user": q.user} if q.user else {})}
               for q in questions]
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")


def write_outputs(path: Path, task: str, outputs: dict[str, str]) -> None:
    """Golds or predictions, in LaMP's outputs format."""
    body = {"task": task, "golds": [{"id": qid, "output": out} for qid, out in outputs.items()]}
    path.write_text(json.dumps(body, ensure_ascii=False, indent=1), encoding="utf-8")


def _questions_file(folder: Path, split: str) -> Path | None:
    """A split's questions file, flat (`dev_questions.json`) or in its own folder (`dev/dev_questions.json`), as
    LaMP distributes them."""
    for where in (folder, folder / split):
        found = sorted(where.glob(f"{split}*questions*.json")) if where.is_dir() else []
        if found:
            return found[0]
    return None


def _load_split(qpath: Path, task: str) -> list[Question]:
    outputs = sorted(qpath.parent.glob(qpath.name.replace("questions", "outputs")))
    if not outputs:
        raise FormatError(f"{qpath.parent}: no outputs file beside {qpath.name} (golds are needed to score)")
    loaded = load_questions(qpath, task)
    file_task, golds = load_outputs(outputs[0])
    if file_task.replace("-", "_").lower() != task.lower():
        raise FormatError(f"{outputs[0]}: holds task {file_task}, not {task}")
    attach_golds(loaded, golds, outputs[0])
    return loaded


def load_dataset(folder: Path, task: str) -> tuple[list[Question], list[Question]]:
    """A LaMP folder as (evaluated questions, training questions). The dev split is evaluated (else test, else the
    only questions file); the train split, when there is one beside it, is what methods may learn from ([] if
    none: the caller then splits users itself)."""
    if not folder.is_dir():
        raise FormatError(f"{folder}: not a folder with LaMP files")
    evaluated = _questions_file(folder, "dev") or _questions_file(folder, "test")
    train = _questions_file(folder, "train")
    if evaluated is None:
        evaluated, train = train or _questions_file(folder, ""), None
    if evaluated is None:
        raise FormatError(f"{folder}: no *questions*.json file")
    return _load_split(evaluated, task), _load_split(train, task) if train else []
