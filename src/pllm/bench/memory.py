"""The memory task: a long chat history ingested into a fresh vault, then its questions asked one after another
through the assistant, as `pllm ask` asks them (so the log of earlier answers is there when later ones are asked).

Scored on what retrieval found (recall@k: a retrieved item comes from a session, or is a turn, that answers the
question), on the
answer itself (token F1 against the gold answer, SQuAD's normalisation) and on seconds per question. Every number
has a 95% bootstrap interval over questions, and each method a paired interval against plain BM25.

Methods, all in one run over the same vault:
- bm25: a plain BM25 over the turns (bm25s, its English stopwords, no stemming, no recency): the floor.
- pllm: the assistant's own retrieval as configured (PLLM_EMBEDDINGS decides whether embeddings join BM25).
- hybrid: pllm's retrieval with the packaged MiniLM embeddings fused in, whatever the setting.
The answers are the assistant's (retrieval as configured). A full-history baseline runs only where the history
fits the model's context; the report says when it does not.

Data: LongMemEval's format (Wu et al. 2024; MIT licence): a JSON list of records with `question` (or a list,
`questions`), `answer` (`answers`), `answer_session_ids`, `haystack_session_ids`, `haystack_dates` and
`haystack_sessions` (lists of {"role", "content"} turns). Or LoCoMo's (Maharana et al. 2024, `locomo10.json`,
CC BY-NC 4.0, not shipped): records with a two-person `conversation` (`session_N` lists of {"speaker", "dia_id",
"text"}, `session_N_date_time`) and `qa` ({"question", "answer", "evidence": ["D1:3"], "category"}); evidence is by
turn, and the adversarial category (no answer in the history) is left out. RealMem's people (evidence by session)
and BEAM's chats (a folder each, evidence by message) are read by pllm.bench.memory_sets.
"""

from __future__ import annotations

import re
import secrets
import string
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from pllm.bench.lamp import FormatError, _load_json
from pllm.bench.metrics import Bootstrap, mean_of
from pllm.bench.report import improvement_text, with_interval
from pllm.config import Settings
from pllm.lm.embeddings import load_embedder
from pllm.lm.hardware import cpu_info
from pllm.lm.runtime import GenerationConfig, Runtime
from pllm.personal.assistant import Assistant
from pllm.personal.ingest import CONVERSATION_KIND
from pllm.personal.retrieve import RetrievalConfig, Retriever, document_id
from pllm.personal.vault import Vault, approx_tokens, create_vault
from pllm.reports import Report

METHODS = ("bm25", "pllm", "hybrid")
KS = (3, 10)
BASELINE = "bm25"
ANSWER = GenerationConfig(max_tokens=64)  # the gold answers are a phrase or two


@dataclass(frozen=True)
class MemoryQuestion:
    id: str
    question: str
    answer: str
    evidence: frozenset[str]  # the units that answer it: sessions (LongMemEval) or turns (LoCoMo)


@dataclass(frozen=True)
class Turn:
    session: str
    speaker: str  # '' the user; else "assistant" or the other person's name
    content: str  # as the vault stores it: an imported conversation's turns read "Name: text", as `pllm ingest` has it
    created_at: float
    unit: str  # the evidence unit it belongs to: its session, or its own id where questions name turns


@dataclass
class History:
    id: str
    turns: list[Turn]
    questions: list[MemoryQuestion]
    unit: str = "session"  # what the evidence names: "session" or "turn"
    left_out: int = 0  # questions not asked: adversarial ones (no answer in the history) or naming no known turn

    @property
    def tokens(self) -> int:
        return sum(approx_tokens(t.content) for t in self.turns)


LOCOMO_DATE = "%I:%M %p on %d %B, %Y"  # "1:56 pm on 8 May, 2023"
LOCOMO_ADVERSARIAL = 5  # LoCoMo's category of questions whose answer is not in the history


def _date(value: Any, where: str) -> float:
    """LongMemEval's '2023/05/20 (Sat) 02:21', LoCoMo's '1:56 pm on 8 May, 2023', or ISO-8601."""
    text = re.sub(r"\s*\(\w+\)\s*", " ", str(value)).strip().replace("/", "-")
    for parse in (datetime.fromisoformat, lambda t: datetime.strptime(t, LOCOMO_DATE)):
        try:
            return parse(text).timestamp()
        except ValueError:
            pass
    raise FormatError(f"{where}: date {value!r} is neither LongMemEval's, LoCoMo's nor ISO-8601")


def load_histories(path: Path) -> list[History]:
    """LongMemEval records (sessions of user/assistant turns, evidence by session), LoCoMo conversations (two
    people, evidence by turn: `D3:12`) or RealMem people (evidence by session), told apart by their fields; a folder
    holds BEAM chats (evidence by turn) or such files (see pllm.bench.memory_sets)."""
    from pllm.bench import memory_sets  # it builds on this module's History and Turn

    histories = memory_sets.load_folder(path, _histories_in) if path.is_dir() else _histories_in(path)
    if not histories:  # e.g. a RealMem person too short for a cut
        raise FormatError(f"{path}: no history in it has a question to ask")
    return histories


def _histories_in(path: Path) -> list[History]:
    from pllm.bench import memory_sets

    data = _load_json(path)
    if memory_sets.is_realmem(data):  # a RealMem file is one person, an object
        data = [data]
    if not isinstance(data, list) or not data:
        raise FormatError(f"{path}: a memory file is a non-empty JSON list of LongMemEval, LoCoMo or RealMem records")
    histories: list[History] = []
    for n, record in enumerate(data):
        where = f"{path}: record {n}"
        if isinstance(record, dict) and "conversation" in record:
            histories.append(_locomo(record, where, n))
        elif memory_sets.is_realmem(record):
            histories.extend(memory_sets.realmem(record, where, n))
        else:
            histories.append(_longmemeval(record, where, n))
    return histories


def _longmemeval(record: Any, where: str, n: int) -> History:
    keys = ("haystack_sessions", "haystack_session_ids", "haystack_dates", "answer_session_ids")
    if not isinstance(record, dict) or any(k not in record for k in keys):
        raise FormatError(f"{where}: needs fields {', '.join(keys)} and question/answer (LongMemEval), or "
                          "conversation and qa (LoCoMo)")
    many = "questions" in record
    questions = record["questions"] if many else [record.get("question")]
    answers = record["answers"] if many else [record.get("answer")]
    sessions = record["answer_session_ids"] if many else [record["answer_session_ids"]]
    if not (len(questions) == len(answers) == len(sessions)) or not all(isinstance(q, str) for q in questions):
        raise FormatError(f"{where}: questions, answers and answer_session_ids do not line up")
    turns = []
    for sid, date, session in zip(record["haystack_session_ids"], record["haystack_dates"],
                                  record["haystack_sessions"], strict=True):
        start = _date(date, f"{where}, session {sid}")
        for m, turn in enumerate(session):
            if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
                raise FormatError(f"{where}, session {sid}, turn {m}: needs a 'content' string")
            speaker = "" if turn.get("role", "user") == "user" else "assistant"
            turns.append(Turn(str(sid), speaker, turn["content"], start + m, str(sid)))
    rid = str(record.get("question_id", n))
    return History(rid, turns, [MemoryQuestion(f"{rid}:{k}", q, str(a), frozenset(map(str, s)))
                                for k, (q, a, s) in enumerate(zip(questions, answers, sessions, strict=True))])


def _locomo(record: dict[str, Any], where: str, n: int) -> History:
    conversation, qa = record["conversation"], record.get("qa")
    if not isinstance(conversation, dict) or not isinstance(qa, list) or "session_1" not in conversation:
        raise FormatError(f"{where}: a LoCoMo record needs a conversation with session_1, session_2, ... and a qa list")
    me = conversation.get("speaker_a")  # the history is read as speaker_a's: `pllm ingest --me speaker_a`
    turns = []
    s = 1
    while f"session_{s}" in conversation:
        start = _date(conversation.get(f"session_{s}_date_time"), f"{where}, session_{s}_date_time")
        for m, turn in enumerate(conversation[f"session_{s}"]):
            if not isinstance(turn, dict) or not all(isinstance(turn.get(k), str) for k in ("speaker", "text",
                                                                                             "dia_id")):
                raise FormatError(f"{where}, session_{s}, turn {m}: needs 'speaker', 'text' and 'dia_id' strings")
            text = turn["text"] + (f" [shares {turn['blip_caption']}]" if turn.get("blip_caption") else "")
            turns.append(Turn(str(s), "" if turn["speaker"] == me else turn["speaker"],
                              f"{turn['speaker']}: {text}", start + m, _dia_id(turn["dia_id"])))
        s += 1
    known = {t.unit for t in turns}
    rid = str(record.get("sample_id", n))
    questions = []
    for k, q in enumerate(qa):
        if not isinstance(q, dict) or not isinstance(q.get("question"), str) or "evidence" not in q:
            raise FormatError(f"{where}, qa {k}: needs 'question', 'answer' and 'evidence'")
        named = re.split(r"[;,\s]+", " ".join(map(str, q["evidence"])))  # some list "D8:6; D9:17" as one
        evidence = frozenset(e for e in map(_dia_id, named) if e in known)
        if q.get("category") != LOCOMO_ADVERSARIAL and evidence and "answer" in q:
            questions.append(MemoryQuestion(f"{rid}:{k}", q["question"], str(q["answer"]), evidence))
    return History(rid, turns, questions, unit="turn", left_out=len(qa) - len(questions))


def _dia_id(text: str) -> str:
    """LoCoMo's turn id, with its typos mended: 'D30:05' and 'D:30:5' are 'D30:5'."""
    found = re.fullmatch(r"D:?(\d+):0*(\d+)", text.strip())
    return f"D{found[1]}:{found[2]}" if found else text.strip()


# -- answer scoring (SQuAD's normalisation) -------------------------------------------------------------------------
def _normal_tokens(text: str) -> list[str]:
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return [w for w in text.split() if w not in ("a", "an", "the")]


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = _normal_tokens(prediction), _normal_tokens(gold)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or not common:
        return float(pred == ref)
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


# -- the run ---------------------------------------------------------------------------------------------------------
@dataclass
class QuestionResult:
    question: MemoryQuestion
    found: dict[str, list[str]]  # method -> evidence units of its ranked items, best first
    answer: str = ""
    seconds: float = 0.0  # retrieval + answer through the assistant
    in_prompt: list[str] = field(default_factory=list)  # the units of what actually went into the prompt

    def recall(self, method: str, k: int) -> float:
        return float(any(u in self.question.evidence for u in self.found[method][:k]))

    def rank(self, method: str) -> int | None:
        """Where the first item from the evidence is in the method's ranking (1 = first), None when not found."""
        return next((i + 1 for i, u in enumerate(self.found[method]) if u in self.question.evidence), None)


@dataclass
class MemoryResult:
    results: list[QuestionResult]
    methods: list[str]
    answered: bool
    machine: dict[str, Any]
    history_tokens: list[int]
    context_tokens: int
    embeddings_setting: bool
    unit: str = "session"  # what recall counts: an item from an answering session, or an answering turn itself
    left_out: int = 0  # questions of the data not asked (see History.left_out)
    ingest_seconds: float = 0.0  # every history into its vault, and its passages indexed (BM25)
    embed_seconds: float = 0.0  # hybrid's embeddings of every history, when it ran
    turns: int = 0  # ingested over all histories

    def table(self) -> dict[str, dict[str, Any]]:
        """Per method: recall@k with intervals, the paired interval against bm25; answers for pllm."""
        boot = Bootstrap(len(self.results), seed=0)
        rows: dict[str, dict[str, Any]] = {}
        for method in self.methods:
            row: dict[str, Any] = {}
            for k in KS:
                hits = np.array([r.recall(method, k) for r in self.results])
                base = np.array([r.recall(BASELINE, k) for r in self.results])
                row[f"recall@{k}"] = round(float(hits.mean()), 4)
                row[f"recall@{k}_interval"] = [round(v, 4) for v in boot.interval(mean_of(hits))]
                if method != BASELINE:
                    row[f"recall@{k}_vs_bm25"] = [round(v, 4) for v in boot.improvement_interval(
                        mean_of(hits), mean_of(base), f"recall@{k}")]
                    row[f"recall@{k}_relative_gain"] = (round(float(hits.mean() / base.mean() - 1), 4)
                                                        if base.mean() else None)
            rows[method] = row
        if "pllm" in rows:  # retrieval alone, or retrieval and the answer where answers were asked for
            rows["pllm"]["seconds_per_question"] = round(float(np.mean([r.seconds for r in self.results])), 4)
        if self.answered:
            f1 = np.array([token_f1(r.answer, r.question.answer) for r in self.results])
            in_prompt = np.array([float(any(u in r.question.evidence for u in r.in_prompt))
                                  for r in self.results])
            rows["pllm"].update({
                "answer_f1": round(float(f1.mean()), 4),
                "answer_f1_interval": [round(v, 4) for v in boot.interval(lambda i: f1[i].mean())],
                "answer_in_prompt": round(float(in_prompt.mean()), 4),
            })
        return rows

    def as_json(self) -> dict[str, Any]:
        return {"task": "memory", "questions": len(self.results), "left_out": self.left_out, "unit": self.unit,
                "histories": len(self.history_tokens),
                "history_tokens": self.history_tokens, "context_tokens": self.context_tokens,
                "full_history_fits": max(self.history_tokens) <= self.context_tokens,
                "embeddings_setting": self.embeddings_setting, "machine": self.machine, "methods": self.table(),
                "turns": self.turns, "ingest_seconds_per_1000_turns": round(1000 * self.ingest_seconds
                                                                          / max(1, self.turns), 2),
                "embed_seconds_per_1000_turns": round(1000 * self.embed_seconds / max(1, self.turns), 2),
                # per question, the rank (1-based) of the first item from its evidence, by method: what lets
                # several sets be pooled into one paired interval
                "ranks": [{"id": r.question.id, **{m: r.rank(m) for m in self.methods}} for r in self.results],
                "answers": [{"id": r.question.id, "question": r.question.question, "gold": r.question.answer,
                             "answer": r.answer} for r in self.results] if self.answered else []}


def _plain_bm25(turns: list[Turn]) -> Callable[[str, int], list[int]]:
    import bm25s

    index = bm25s.BM25()
    index.index(bm25s.tokenize([t.content for t in turns], stopwords="en", show_progress=False), show_progress=False)

    def search(query: str, k: int) -> list[int]:
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not tokens.vocab:
            return []
        found, scores = index.retrieve(tokens, k=min(k, len(turns)), show_progress=False)
        return [int(i) for i, s in zip(found[0], scores[0], strict=True) if s > 0]

    return search


def _ingest(vault: Vault, history: History) -> dict[int, str]:
    """The history's turns as conversation documents, as `pllm ingest` stores a .jsonl conversation; document id ->
    evidence unit (a turn the vault already holds word for word is stored once, under its first unit)."""
    vault.add_documents([(f"session:{t.session}", CONVERSATION_KIND, t.content, t.created_at, t.speaker)
                         for t in history.turns])
    first: dict[tuple[str, str], str] = {}
    for t in history.turns:
        first.setdefault((f"session:{t.session}", t.content), t.unit)
    return {d.id: first[(d.source, d.content)] for d in vault.documents()}


def _units_of(hits: list[Any], units: dict[int, str]) -> list[str]:
    """The evidence unit of each hit's document; "(exchange)" for a logged answer the user accepted."""
    return [units[doc] if (doc := document_id(h.item.key)) is not None else "(exchange)" for h in hits]


Tick = Callable[[int, int], None]


def run_memory(histories: list[History], settings: Settings, *, methods: list[str], answer: bool = True,
               tick: Tick = lambda *_: None) -> MemoryResult:
    methods = [BASELINE, *[m for m in methods if m != BASELINE]]
    embedder = load_embedder() if "hybrid" in methods or settings.embeddings else None
    runtime = Runtime.from_settings(settings) if answer else None
    config = RetrievalConfig.from_settings(settings)
    ranking = RetrievalConfig(k=max(KS), budget_tokens=10**9)  # recall@k judges the order, not the budget
    results: list[QuestionResult] = []
    total = sum(len(h.questions) for h in histories)
    ingest_seconds = embed_seconds = 0.0
    try:
        for history in histories:
            with tempfile.TemporaryDirectory(prefix="pllm-memory-") as tmp:
                vault = create_vault(Path(tmp) / "vault.db", secrets.token_hex(16))
                started = time.perf_counter()
                units = _ingest(vault, history)
                assistant = Assistant(runtime, vault=vault, retrieval=config,  # type: ignore[arg-type]
                                      embedder=embedder if settings.embeddings else None, client="eval")
                assistant.retriever()  # passages and index (and embeddings with PLLM_EMBEDDINGS), as `pllm ask`
                ingest_seconds += time.perf_counter() - started
                plain = _plain_bm25(history.turns)
                # No answer is accepted here, so the log never joins the index: one hybrid index per history.
                started = time.perf_counter()
                hybrid = Retriever.from_vault(vault, embedder=embedder) if "hybrid" in methods and embedder else None
                embed_seconds += time.perf_counter() - started
                for q in history.questions:
                    found = {BASELINE: [history.turns[i].unit for i in plain(q.question, max(KS))]}
                    started = time.perf_counter()
                    if "pllm" in methods:
                        found["pllm"] = _units_of(assistant.retriever().search(q.question, ranking), units)
                    result = QuestionResult(q, found)
                    if answer:
                        assistant.reset()  # each question is its own `pllm ask`; the vault's log persists
                        result.answer = assistant.answer(q.question, ANSWER).text.strip()
                        assert assistant.last_context is not None
                        result.in_prompt = _units_of(assistant.last_context.hits, units)
                    result.seconds = time.perf_counter() - started
                    if hybrid is not None:
                        found["hybrid"] = _units_of(hybrid.search(q.question, ranking), units)
                    results.append(result)
                    tick(len(results), total)
                vault.close()
    finally:
        if runtime is not None:
            runtime.close()
    used = [m for m in methods if all(m in r.found for r in results)]
    unit = " or ".join(sorted({h.unit for h in histories}))
    return MemoryResult(results, used, answer, {"cpu": cpu_info().as_dict()}, [h.tokens for h in histories],
                        settings.n_ctx, settings.embeddings and embedder is not None, unit,
                        sum(h.left_out for h in histories),
                        ingest_seconds, embed_seconds, sum(len(h.turns) for h in histories))


def write_memory_report(result: MemoryResult, folder: Path, *, command: str) -> Path:
    """report.md with the table, a recall plot, and the answers beside their golds; results.json."""
    data = result.as_json()
    table = data["methods"]

    def draw(ax: Any) -> None:
        for offset, k in ((-0.2, KS[0]), (0.2, KS[1])):
            values = [table[m][f"recall@{k}"] for m in result.methods]
            lows = [v - table[m][f"recall@{k}_interval"][0] for v, m in zip(values, result.methods, strict=True)]
            highs = [table[m][f"recall@{k}_interval"][1] - v for v, m in zip(values, result.methods, strict=True)]
            ax.bar([n + offset for n in range(len(values))], values, width=0.4, yerr=[lows, highs], capsize=3,
                   label=f"recall@{k}")
        ax.set_xticks(range(len(result.methods)), result.methods)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"memory: answering {result.unit} retrieved (95% bootstrap CI)", fontsize=10)
        ax.legend(fontsize=8)

    head = ["method", *[f"recall@{k} [95% CI]" for k in KS], f"recall@{KS[0]} vs bm25 [95% CI]"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in result.methods:
        row = table[m]
        versus = "(baseline)" if m == BASELINE else improvement_text(*row[f"recall@{KS[0]}_vs_bm25"])
        rows.append("| " + " | ".join([m, *[with_interval(row[f"recall@{k}"], row[f"recall@{k}_interval"])
                                            for k in KS], versus]) + " |")
    cpu = result.machine["cpu"]
    report = Report("pllm eval: memory", command=command,
                    machine=f"Measured on {cpu['model']} ({cpu['cores']} cores). Embeddings in pllm's own retrieval: "
                    f"{'on' if result.embeddings_setting else 'off'} (PLLM_EMBEDDINGS).")
    report.add(f"{len(result.results)} questions over {len(result.history_tokens)} histories of "
               f"{', '.join(str(t) for t in result.history_tokens)} tokens, "
               + ("asked in sequence through the assistant" if result.answered else "retrieval only (no answers)")
               + (f" ({result.left_out} questions of the data left out: no answer in the history, or no known "
                  "evidence turn)" if result.left_out else "")
               + f". recall@k: one of the k best items is an answering {result.unit}"
               + (" or comes from one" if "session" in result.unit else "") + ".")
    report.add(*rows)
    report.add(f"Cost: {data['turns']} turns ingested, {data['ingest_seconds_per_1000_turns']:.1f} s per 1,000 turns "
               "into the vault (text, passages, BM25" + (", embeddings" if result.embeddings_setting else "") + ")"
               + (f"; hybrid's embeddings {data['embed_seconds_per_1000_turns']:.1f} s more per 1,000 turns"
                  if "hybrid" in result.methods else "")
               + (f"; pllm's retrieval {1000 * table['pllm']['seconds_per_question']:.0f} ms per question"
                  if "pllm" in table and not result.answered else "") + ".")
    if result.answered:
        pllm = table["pllm"]
        report.add(f"Answers through the assistant (SmolLM2 with the retrieved items in its prompt): token F1 "
                   f"{with_interval(pllm['answer_f1'], pllm['answer_f1_interval'])}; an answering {result.unit} was "
                   f"in the prompt for {pllm['answer_in_prompt']:.0%} of the questions; "
                   f"{pllm['seconds_per_question']:.1f} s per question.")
    if not data["full_history_fits"]:
        report.add(f"Full history in the prompt: not run, no history fits the {result.context_tokens}-token context.")
    return report.plot("recall.png", draw, size=(6, 3.4)).write(folder, data)
