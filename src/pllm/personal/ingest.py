"""Turn the user's own files into vault documents: .txt, .md, .jsonl and LaMP questions files.

- .txt / .md: paragraphs, merged up to a token budget (a long paragraph is split at sentence ends; a markdown
  heading stays with the text under it); dated by the file's modification time.
- .jsonl: one object per line, `{"text": str, "timestamp"?: ISO-8601 string or epoch seconds, "speaker"?: str}`;
  with speakers it is a conversation: each turn is stored as "speaker: text", and the user's own turns (the speaker
  named by `pllm ingest --me`, the vault's user name, "user" or "me") are told apart from the others'.
- .json: a LaMP questions file (`[{"id", "input", "profile": [...]}]`); every profile item becomes a document.

A malformed file raises IngestError naming the file and line (or record), and nothing from it is added: each file
is parsed completely before anything is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pllm.config import default
from pllm.errors import IngestError
from pllm.personal.vault import approx_tokens

SUFFIXES = (".txt", ".md", ".jsonl", ".json")
CONVERSATION_KIND = "jsonl"  # a document of this kind is a line of a .jsonl file: a turn or a dated note
# LaMP profile fields, in the order they read best as one text.
LAMP_FIELDS = ("title", "description", "abstract", "text", "tag", "category", "score")


@dataclass(frozen=True)
class Record:
    """One document to add: (source, kind, content, created_at), and who said it in a conversation."""

    source: str
    kind: str
    content: str
    created_at: float
    speaker: str = ""  # as the file names them ('' where the file has no speakers)
    said: str = ""  # the turn's own words, without the "speaker: " prefix (facts are read from these)

    def row(self, user_speakers: frozenset[str] = frozenset()) -> tuple[str, str, str, float, str]:
        return (self.source, self.kind, self.content, self.created_at, self.subject(user_speakers))

    def subject(self, user_speakers: frozenset[str]) -> str:
        """'' when the user said it (or the file has no speakers), else the speaker's name."""
        return "" if not self.speaker or self.speaker.lower() in user_speakers else self.speaker


def chunk_text(text: str, budget: int, *, markdown: bool = False) -> list[str]:
    """Paragraph chunks of at most ~`budget` tokens each."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    pieces: list[str] = []
    for p in paragraphs:
        if approx_tokens(p) <= budget:
            pieces.append(p)
            continue
        sentence, pieces_before = "", len(pieces)
        for s in re.split(r"(?<=[.!?])\s+", p):
            if sentence and approx_tokens(sentence + " " + s) > budget:
                pieces.append(sentence)
                sentence = s
            else:
                sentence = f"{sentence} {s}".strip()
        if sentence or len(pieces) == pieces_before:
            pieces.append(sentence)
    chunks: list[str] = []
    for piece in pieces:
        heading_alone = markdown and chunks and chunks[-1].lstrip().startswith("#") and "\n" not in chunks[-1]
        starts_section = markdown and piece.startswith("#")
        if chunks and (heading_alone or (not starts_section and approx_tokens(chunks[-1] + "\n\n" + piece) <= budget)):
            chunks[-1] = chunks[-1] + "\n\n" + piece
        else:
            chunks.append(piece)
    return chunks


def _timestamp(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise IngestError(f"{where}: timestamp must be ISO-8601 text or epoch seconds")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise IngestError(f"{where}: timestamp {value!r} is not ISO-8601 text or epoch seconds")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise IngestError(f"{path}: {exc.strerror}") from None


def _jsonl(path: Path) -> list[Record]:
    records = []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise IngestError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or not obj["text"].strip():
            raise IngestError(f'{where}: expected an object with a non-empty "text" string')
        created = _timestamp(obj["timestamp"], where) if "timestamp" in obj else path.stat().st_mtime
        speaker = obj.get("speaker", "")
        if not isinstance(speaker, str):
            raise IngestError(f'{where}: "speaker" must be a string')
        text, speaker = obj["text"].strip(), " ".join(speaker.split())
        content = f"{speaker}: {text}" if speaker else text
        records.append(Record(str(path), CONVERSATION_KIND, content, created, speaker, text))
    return records


def lamp_item_text(item: dict[str, Any]) -> str:
    """One LaMP profile item as text: its known fields in a fixed order, labelled."""
    parts = [f"{k}: {item[k]}" for k in LAMP_FIELDS if k in item and str(item[k]).strip()]
    return "\n".join(parts)


def _lamp(path: Path) -> list[Record]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise IngestError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise IngestError(f'{path}: a LaMP questions file is a list of {{"id", "input", "profile"}} records')
    records = []
    for n, question in enumerate(data):
        where = f"{path}: record {n}"
        if not isinstance(question, dict) or not isinstance(question.get("profile"), list):
            raise IngestError(f'{where}: missing its "profile" list')
        for m, item in enumerate(question["profile"]):
            text = lamp_item_text(item) if isinstance(item, dict) else ""
            if not text:
                raise IngestError(f"{where}, profile item {m}: no known field ({', '.join(LAMP_FIELDS)})")
            created = _timestamp(item["date"], f"{where}, profile item {m}") if "date" in item else path.stat().st_mtime
            records.append(Record(f"{path}#{question.get('id', n)}", "lamp", text, created))
    return records


def parse_file(path: Path, *, chunk_tokens: int = default("chunk_tokens")) -> list[Record]:
    """All records of one file, or IngestError; nothing is written here."""
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise IngestError(f"{path}: unsupported file type {suffix or '(none)'}; use {', '.join(SUFFIXES)}")
    if suffix == ".jsonl":
        return _jsonl(path)
    if suffix == ".json":
        return _lamp(path)
    mtime = path.stat().st_mtime
    chunks = chunk_text(_read_text(path), chunk_tokens, markdown=suffix == ".md")
    return [Record(str(path), suffix[1:], chunk, mtime) for chunk in chunks]


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files as given, and the supported files inside any folder given (sorted, recursive)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
        else:
            out.append(p)
    return out
