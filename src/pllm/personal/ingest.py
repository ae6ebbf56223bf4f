"""Turn the user's own files into vault documents: .txt, .md, .jsonl and LaMP questions files.

- .txt / .md: passages, each its own document: paragraphs, or a diary's dated entries (a line that starts with a
  date, "2026-03-04", "March 4, 2026", "4 March 2026", "Mon 4 Mar", begins one), never merged, so forgetting one
  leaves the rest of the file; a passage over the chunk size is split (an entry at its paragraphs, a paragraph at
  its sentence ends); a markdown heading or a date line alone stays with the text under it. An entry is dated by
  its date line, anything else by the file's modification time.
- .jsonl: one object per line, `{"text": str, "timestamp"?: ISO-8601 string or epoch seconds, "speaker"?: str}`;
  with speakers it is a conversation: each turn is stored as "speaker: text", and the user's own turns (the speaker
  named by `pllm ingest --me`, the vault's user name, "user" or "me") are told apart from the others'.
- .json: a LaMP questions file (`[{"id", "input", "profile": [...]}]`); every profile item becomes a document.
- audio (.wav, .mp3, .m4a, .ogg, .webm, ...): a voice memo, transcribed on the device (`lm.speech`) and stored as the
  user's own text, dated when it was recorded; the audio itself is not kept.

A malformed file raises IngestError naming the file and line (or record), and nothing from it is added: each file
is parsed completely before anything is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pllm.config import default
from pllm.errors import AudioError, IngestError
from pllm.lm.speech import AUDIO_SUFFIXES, recorded_at
from pllm.personal.items import VOICE_KIND
from pllm.personal.text import packed
from pllm.personal.vault import Vault, approx_tokens

if TYPE_CHECKING:
    from pllm.lm.runtime import Runtime
    from pllm.lm.speech import Transcriber

TEXT_SUFFIXES = (".txt", ".md", ".jsonl", ".json")
SUFFIXES = (*TEXT_SUFFIXES, *AUDIO_SUFFIXES)
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


def store_records(vault: Vault, records: Sequence[Record], source: str, *, mine: frozenset[str] = frozenset(),
                  runtime: Runtime | None = None) -> tuple[int, int, int]:
    """Add `records` to the vault as documents (deduplicated) and learn the facts each states, about whoever said
    it: (added, skipped, facts). The one path `pllm ingest` and the library's `remember` take."""
    from pllm.personal.profile import learn_facts  # here: the profile imports the vault, which imports this module

    added, skipped = vault.add_documents([r.row(mine) for r in records])
    facts = sum(len(learn_facts(vault, r.said or r.content, source=f"document:{source}", runtime=runtime,
                                subject=r.subject(mine), stated_at=r.created_at)) for r in records)
    return added, skipped, facts


MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# A diary entry's first line: a markdown heading mark, a weekday, then an ISO date (and time), "March 4[, 2026]" or
# "4 March[ 2026]"; the words are checked against MONTHS and WEEKDAYS in _date_line.
DATE_LINE = re.compile(
    r"(?:#{1,6}\s*)?(?:(?P<wd>[a-z]{3,9})\.?,?\s+)?"
    r"(?:(?P<iy>\d{4})[-/.](?P<im>\d{1,2})[-/.](?P<id>\d{1,2})(?:[T ](?P<hh>\d{1,2}):(?P<mi>\d{2}))?"
    r"|(?P<m1>[a-z]{3,9})\.?\s+(?P<d1>\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(?P<y1>\d{4}))?"
    r"|(?P<d2>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<m2>[a-z]{3,9})\.?(?:,?\s+(?P<y2>\d{4}))?)"
    r"(?=[\s:,;.)\]\u2013\u2014-]|$)", re.I)


def _named(word: str | None, names: tuple[str, ...]) -> int | None:
    """1-based index of the name `word` spells or abbreviates ("Mar", "Sept", "march"), else None ("Mayor")."""
    w = (word or "").lower()
    return next((n for n, name in enumerate(names, start=1) if len(w) >= 3 and name.startswith(w)), None)


def _date_line(line: str) -> re.Match[str] | None:
    """The date a diary entry's first line starts with, else None. A date without a year ("4 March") counts only
    after a weekday or alone on its line, so "May 5 people came" stays prose."""
    m = DATE_LINE.match(line.strip())
    if m is None or (m["wd"] and _named(m["wd"], WEEKDAYS) is None):
        return None
    if m["iy"]:
        return m
    if _named(m["m1"] or m["m2"], MONTHS) is None:
        return None
    alone = not line.strip()[m.end():].strip(" :.,;-\u2013\u2014")
    return m if m["y1"] or m["y2"] or m["wd"] or alone else None


def _date_of(m: re.Match[str], reference: float) -> float | None:
    """Local midnight (or the time given) of a matched date; a date without a year is the latest one not after
    `reference` (the file's date). None when it does not parse (2026-02-30)."""
    try:
        if m["iy"]:
            return datetime(int(m["iy"]), int(m["im"]), int(m["id"]), int(m["hh"] or 0), int(m["mi"] or 0)).timestamp()
        month, day, year = _named(m["m1"] or m["m2"], MONTHS), int(m["d1"] or m["d2"]), m["y1"] or m["y2"]
        assert month is not None  # _date_line checked it
        if year:
            return datetime(int(year), month, day).timestamp()
        ref = datetime.fromtimestamp(reference).date()
        when = date(ref.year, month, day)
        if when > ref + timedelta(days=1):
            when = date(ref.year - 1, month, day)
        return datetime(when.year, when.month, when.day).timestamp()
    except ValueError:
        return None


def _entries(text: str) -> list[tuple[str, re.Match[str] | None]]:
    """The text cut before every dated line: (the text before the first, None), then (each entry, its date)."""
    entries: list[tuple[list[str], re.Match[str] | None]] = [([], None)]
    for line in text.splitlines():
        m = _date_line(line)
        if m is not None:
            entries.append(([], m))
        entries[-1][0].append(line)
    return [("\n".join(lines).strip(), m) for lines, m in entries if "\n".join(lines).strip()]


def _pieces(text: str, budget: int) -> list[str]:
    """Paragraphs (blank-line separated), a paragraph over `budget` tokens split at sentence ends."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    pieces: list[str] = []
    for p in paragraphs:
        if approx_tokens(p) <= budget:
            pieces.append(p)
            continue
        def fits(chunk: str) -> bool:
            return approx_tokens(chunk) <= budget

        # a sentence over the budget (a transcript without punctuation) is cut between words
        sentences = re.split(r"(?<=[.!?])\s+", p)
        pieces += packed((cut for s in sentences for cut in ([s] if fits(s) else packed(s.split(), fits))), fits)
    return pieces


def _is_title(piece: str, markdown: bool) -> bool:
    """A markdown heading or a date alone on its line: it belongs with the text under it."""
    if "\n" in piece:
        return False
    m = _date_line(piece)
    return (markdown and piece.lstrip().startswith("#")) or (m is not None and not piece[m.end():].strip(" :.,;-"))


def passages(text: str, budget: int = default("chunk_tokens"), *, markdown: bool = False,
             dated: float) -> list[tuple[str, float]]:
    """The passages a text is stored as, each with its date: the one rule for where a stored document ends (ingest
    and the vault migration that split older documents both use it).

    A passage is a paragraph, or a diary's dated entry (dated by its line when it parses, else `dated`, as is the
    text before the first entry). Passages are never merged: each is what `pllm profile forget` removes, so one
    paragraph never takes another with it. Over `budget` tokens an entry is split at its paragraphs and a paragraph
    at its sentence ends; a heading or date line alone stays with the text under it.
    """
    out: list[tuple[str, float]] = []
    for entry, m in _entries(text):
        when = _date_of(m, dated) if m is not None else None
        if m is not None and approx_tokens(entry) <= budget:
            out.append((entry, when if when is not None else dated))
            continue
        parts: list[str] = []
        for piece in _pieces(entry, budget):
            if parts and _is_title(parts[-1], markdown):
                parts[-1] += "\n\n" + piece
            else:
                parts.append(piece)
        out += [(part, when if when is not None else dated) for part in parts]
    return out


def chunk_text(text: str, budget: int) -> list[str]:
    """Paragraph chunks of at most ~`budget` tokens each, merged where they fit: how retrieval indexes a long
    document (a stored document's own boundaries are `passages`')."""
    chunks: list[str] = []
    for piece in _pieces(text, budget):
        if chunks and approx_tokens(chunks[-1] + "\n\n" + piece) <= budget:
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


def parse_file(path: Path, *, chunk_tokens: int = default("chunk_tokens"),
               transcriber: Transcriber | str | None = None) -> list[Record]:
    """All records of one file, or IngestError; nothing is written here. A recording needs a `transcriber` (or is
    refused with the reason given in its place)."""
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise IngestError(f"{path}: unsupported file type {suffix or '(none)'}; use {', '.join(SUFFIXES)}")
    if suffix == ".jsonl":
        return _jsonl(path)
    if suffix == ".json":
        return _lamp(path)
    if suffix in AUDIO_SUFFIXES:
        return _voice_memo(path, chunk_tokens, transcriber)
    found = passages(_read_text(path), chunk_tokens, markdown=suffix == ".md", dated=path.stat().st_mtime)
    return [Record(str(path), suffix[1:], text, when) for text, when in found]


def _voice_memo(path: Path, chunk_tokens: int, transcriber: Transcriber | str | None) -> list[Record]:
    """A recording's transcript as the user's own passages, dated when it was recorded (none if nothing was said).
    `transcriber` may be why there is none (the speech model would not load)."""
    if not transcriber or isinstance(transcriber, str):
        raise IngestError(f"{path}: {transcriber or 'a recording needs the speech model'}")
    try:
        transcript = transcriber.transcribe(path)
    except AudioError as exc:
        raise IngestError(f"{path}: {exc}") from None
    return [Record(str(path), VOICE_KIND, text, when) for text, when in passages(transcript.text, chunk_tokens,
                                                                                 dated=recorded_at(path))]


def is_audio(path: Path) -> bool:
    """A recording, by its name: transcribed rather than read."""
    return path.suffix.lower() in AUDIO_SUFFIXES


def expand_paths(paths: list[Path], *, recordings: bool = False) -> list[Path]:
    """Files as given, and the supported files inside any folder given (sorted, recursive): texts, and recordings
    too only when asked (`recordings`), so a folder that holds music or videos is not transcribed by surprise."""
    wanted = SUFFIXES if recordings else TEXT_SUFFIXES
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in wanted)
        else:
            out.append(p)
    return out
