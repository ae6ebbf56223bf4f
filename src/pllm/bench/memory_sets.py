"""Two more public long-conversation sets for the memory task, read into pllm.bench.memory's History, Turn and
MemoryQuestion as its LongMemEval and LoCoMo loaders read theirs (`load_histories` tells them apart).

RealMem (AvatarMemory/RealMemBench, Apache 2.0): one JSON object per person, `_metadata` and `dialogues`, a list of
dated user-assistant sessions (`session_uuid`, `current_time` "2025-12-19 (Friday)", `dialogue_turns` of
{"speaker": "User" | "Assistant", "content", "is_query"}). A user turn with `is_query` asks for something only an
earlier session knows; the assistant's reply after it names those sessions (`memory_session_uuids`). Each such turn
becomes a question, the reply its gold answer and the named sessions its evidence (recall by session). RealMem asks
inside its timeline, so a person's sessions are cut every ten: each cut is a History of what came before it (see
`realmem`).

BEAM (mohammadtavakoli78/BEAM, Tavakoli et al. 2025): one folder per chat, `chat.json` (or `chat_trunecated.json`,
which BEAM's own code reads first) with batches of user-assistant messages ({"role", "id", "content"}, the first of a
batch carrying its `time_anchor` "March-15-2024"), and `probing_questions/probing_questions.json`, questions by
category whose `source_chat_ids` name the messages that answer them (recall by turn). Abstention questions name none
and are left out; for a knowledge update only the message with the update counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pllm.bench.lamp import FormatError, _load_json
from pllm.bench.memory import History, MemoryQuestion, Turn, _date

REALMEM_WINDOW = 10  # sessions between the cuts of a RealMem timeline (see realmem)
BEAM_QUESTIONS = Path("probing_questions") / "probing_questions.json"
BEAM_CHATS = ("chat_trunecated.json", "chat.json")  # the truncated chat is the one BEAM's questions were asked over
BEAM_DATE = "%B-%d-%Y"  # "March-15-2024"
BEAM_ANSWERS = ("answer", "ideal_answer", "ideal_summary", "ideal_response", "expected_compliance")
BEAM_MARKER = re.compile(r"\s*->->\s*(?:\d+|N/A)(?:\s*,\s*(?:\d+|N/A))*\)?")  # the generator's "->-> 1,3" tags


def load_folder(path: Path, load_file: Callable[[Path], list[History]]) -> list[History]:
    """A BEAM chat folder, a folder of them (BEAM's chats/100K), or a folder of memory files (RealMem's dataset/)."""
    chats = beam_chats(path)
    if chats:
        return [beam(chat) for chat in chats]
    files = sorted(path.glob("*.json"))
    if not files:
        raise FormatError(f"{path}: a memory folder holds BEAM chat folders ({BEAM_QUESTIONS} in each) or JSON files")
    return [history for file in files for history in load_file(file)]


# -- RealMem ---------------------------------------------------------------------------------------------------------
def is_realmem(record: Any) -> bool:
    return isinstance(record, dict) and isinstance(record.get("dialogues"), list) and "conversation" not in record


def realmem(record: dict[str, Any], where: str, n: int) -> list[History]:
    """One History per cut, every REALMEM_WINDOW sessions: the person's sessions before the cut, asked the queries of
    the window after it whose evidence sessions all lie before the cut (RealMem asks inside its timeline, the memory
    task after a history: this way no history holds a query, its reply or anything said after it)."""
    meta = record.get("_metadata")
    rid = str(meta.get("person_name", n)) if isinstance(meta, dict) else str(n)
    sessions: list[tuple[str, list[Turn]]] = []
    asked: list[tuple[int, MemoryQuestion]] = []  # the session it is asked in; its evidence as RealMem names it
    last = float("-inf")
    for s, session in enumerate(record["dialogues"]):
        here = f"{where}, session {s}"
        if not isinstance(session, dict) or "session_uuid" not in session or not isinstance(
                session.get("dialogue_turns"), list):
            raise FormatError(f"{here}: needs 'session_uuid', 'current_time' and 'dialogue_turns' (RealMem)")
        sid, said = str(session["session_uuid"]), session["dialogue_turns"]
        start = _date(session.get("current_time"), f"{here}, current_time")
        turns = []
        for m, turn in enumerate(said):
            if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
                raise FormatError(f"{here}, turn {m}: needs a 'content' string")
            last = max(start, last + 1)  # several sessions can share a day: keep them in order
            turns.append(Turn(sid, "" if turn.get("speaker") == "User" else "assistant", turn["content"], last, sid))
            reply = said[m + 1] if m + 1 < len(said) else None
            if turn.get("is_query") and isinstance(reply, dict) and isinstance(reply.get("content"), str):
                named = frozenset(map(str, reply.get("memory_session_uuids") or []))
                asked.append((s, MemoryQuestion(f"{rid}:{turn.get('query_id') or f'{s}.{m}'}", turn["content"],
                                                reply["content"], named)))
        sessions.append((sid, turns))
    histories = []
    for cut in range(REALMEM_WINDOW, len(sessions), REALMEM_WINDOW):
        before = {sid for sid, _ in sessions[:cut]}
        questions = [q for s, q in asked if cut <= s < cut + REALMEM_WINDOW and q.evidence and q.evidence <= before]
        if questions:
            histories.append(History(f"{rid}@{cut}", [t for _, turns in sessions[:cut] for t in turns], questions))
    if histories:  # the questions of no window: asked in the first, or naming a session of their own window
        histories[0].left_out = len(asked) - sum(len(h.questions) for h in histories)
    return histories


# -- BEAM ------------------------------------------------------------------------------------------------------------
def beam_chats(path: Path) -> list[Path]:
    """The folder itself if it is one BEAM chat, else its chat folders in BEAM's numbering."""
    if (path / BEAM_QUESTIONS).is_file():
        return [path]
    chats = [p for p in path.iterdir() if p.is_dir() and (p / BEAM_QUESTIONS).is_file()]
    return sorted(chats, key=lambda p: (0, int(p.name), "") if p.name.isdigit() else (1, 0, p.name))


def beam(folder: Path) -> History:
    chat_file = next((folder / name for name in BEAM_CHATS if (folder / name).is_file()), None)
    if chat_file is None:
        raise FormatError(f"{folder}: a BEAM chat folder needs chat.json (or chat_trunecated.json)")
    chat, probes = _load_json(chat_file), _load_json(folder / BEAM_QUESTIONS)
    if not isinstance(chat, list) or not isinstance(probes, dict):
        raise FormatError(f"{folder}: BEAM's chat is a list of batches and its questions an object of categories")
    rid = f"{folder.parent.name}/{folder.name}"
    turns: list[Turn] = []
    when: float | None = None
    last = float("-inf")
    for b, batch in enumerate(chat):
        if not isinstance(batch, dict) or not isinstance(batch.get("turns"), list):
            raise FormatError(f"{chat_file}: batch {b}: needs 'turns', lists of messages")
        if batch.get("time_anchor"):
            when = _beam_date(batch["time_anchor"], f"{chat_file}: batch {b}")
        session = str(batch.get("batch_number", b + 1))
        for message in (m for group in batch["turns"] for m in (group if isinstance(group, list) else [group])):
            if not isinstance(message, dict) or not isinstance(message.get("content"), str) or "id" not in message:
                raise FormatError(f"{chat_file}: batch {b}: each message needs an 'id' and a 'content' string")
            if message.get("time_anchor"):
                when = _beam_date(message["time_anchor"], f"{chat_file}: message {message['id']}")
            if when is None:
                raise FormatError(f"{chat_file}: message {message['id']} comes before any time_anchor")
            text = BEAM_MARKER.sub("", message["content"]).strip()
            if text:
                last = max(when, last + 1)
                turns.append(Turn(session, "" if message.get("role") == "user" else "assistant", text, last,
                                  str(message["id"])))
    known = {t.unit for t in turns}
    questions, total = [], 0
    for category, asked in probes.items():
        for k, q in enumerate(asked if isinstance(asked, list) else []):
            total += 1
            if not isinstance(q, dict):
                continue
            named = q.get("source_chat_ids")
            if isinstance(named, dict) and "updated_info" in named:  # a knowledge update: what answers it now
                named = named["updated_info"]
            evidence = frozenset(map(str, _flat(named))) & known
            answer = next((q[a] for a in BEAM_ANSWERS if isinstance(q.get(a), str)), None)
            if evidence and answer is not None and isinstance(q.get("question"), str):
                questions.append(MemoryQuestion(f"{rid}:{category}:{k}", q["question"], answer, evidence))
    return History(rid, turns, questions, unit="turn", left_out=total - len(questions))


def _beam_date(value: Any, where: str) -> float:
    try:
        return datetime.strptime(str(value).strip(), BEAM_DATE).timestamp()
    except ValueError:
        return _date(value, where)


def _flat(named: Any) -> list[Any]:
    """BEAM's message ids, however nested: [3, 5], [[3], 5] or {"first_statement": [3], "second_statement": [5]}."""
    if isinstance(named, dict):
        return [i for v in named.values() for i in _flat(v)]
    if isinstance(named, list):
        return [i for v in named for i in _flat(v)]
    return [] if named is None else [named]
