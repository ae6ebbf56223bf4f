"""The privacy task: how well the gate redacts, and whether anything personal reaches the cloud.

1. Redaction, on a labelled set of sentences (`data/privacy/pii-sentences.jsonl`, written for this project:
   people, places, organisations, e-mails, phones, cards, IBANs, street addresses, URLs with secrets, dates of birth,
   and sentences with none). Recall: a gold value is entirely replaced (by any placeholder type). Precision: a
   replaced span overlaps a gold value. Both by the gate alone (patterns and NER) and with what the vault knows once
   the sentences are ingested (a name found in any document is replaced everywhere), with 95% bootstrap intervals
   over sentences.
2. Leak test: the sentences in a fresh vault, the T-tier service on loopback recording every request body as it
   arrives. Questions are asked through the assistant's cloud path (retrieval puts the sentences into the prompt),
   and one augmentation sends every sentence as a seed. Every gold value is a canary: any body that contains one
   (as written, or its digits alone) is a leak. The vault's egress log must account for every request.

    pllm eval --task privacy --report docs/eval/privacy
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pllm.bench.lamp import FormatError
from pllm.bench.metrics import Bootstrap
from pllm.bench.report import with_interval
from pllm.cloud.server import serve_loopback
from pllm.config import Settings
from pllm.lm.runtime import GenerationConfig, Runtime
from pllm.personal.assistant import Assistant
from pllm.personal.augment import AugmentConfig, augment_vault
from pllm.personal.pii import Span, is_dictionary_word
from pllm.personal.pii_model import PiiModel, load_pii_model
from pllm.personal.privacy import PrivacyGate, Redactor, known_entities
from pllm.personal.remote import CloudClient
from pllm.personal.retrieve import RetrievalConfig
from pllm.personal.vault import create_vault
from pllm.reports import Report

if TYPE_CHECKING:
    from pllm.personal.vault import Vault

LEAK_QUESTIONS = 20  # asked through the cloud path; the augmentation sends every sentence besides

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "data" / "privacy" / "pii-sentences.jsonl"
# Written blind and not measured yet: never in the gate's example bank (data/privacy/README.md says which and why).
HELD_OUT_SETS: tuple[str, ...] = ()


@dataclass(frozen=True)
class PiiSentence:
    text: str
    pii: list[tuple[str, str]]  # (value as it appears in the text, type)

    def spans(self) -> list[tuple[int, int, str]]:
        out = []
        for value, kind in self.pii:
            start = self.text.index(value)
            out.append((start, start + len(value), kind))
        return out


def load_sentences(path: Path) -> list[PiiSentence]:
    """A JSON-lines file of {"text", "pii": [[value, type], ...]} (no "pii": a negative); every value must occur
    in its text."""
    sentences = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: cannot read it ({exc})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            sentence = PiiSentence(str(row["text"]), [(str(v), str(k)) for v, k in row.get("pii") or []])
        except (ValueError, KeyError, TypeError):
            raise FormatError(f"{path}:{n}: expected {{\"text\": ..., \"pii\": [[value, type], ...]}}") from None
        missing = [v for v, _ in sentence.pii if v not in sentence.text]
        if missing:
            raise FormatError(f"{path}:{n}: {missing[0]!r} is not in the text")
        sentences.append(sentence)
    if not sentences:
        raise FormatError(f"{path}: no sentences")
    return sentences


def add_sentences(vault: Vault, sentences: list[PiiSentence]) -> None:
    """The sentences as the user's own notes, a day apart, the last one an hour ago."""
    now = time.time()
    vault.add_documents([("privacy-set.txt", "txt", s.text, now - 3600 - 86400 * (len(sentences) - i))
                         for i, s in enumerate(sentences)])


# -- 1. redaction quality ----------------------------------------------------------------------------------------
@dataclass
class RedactionScore:
    recall: float
    recall_interval: tuple[float, float]
    precision: float
    precision_interval: tuple[float, float]
    recall_by_type: dict[str, tuple[int, int]]  # type -> (hidden, total)
    gold: int
    predicted: int
    misses: list[str] = field(default_factory=list)  # "TYPE value" not fully hidden
    false_positives: list[str] = field(default_factory=list)


def _hidden(text: str, start: int, end: int, spans: list[Span]) -> bool:
    """Every letter and digit of the value lies inside a replaced span. A space or a hyphen between two replaced
    pieces ("<PERSON_1> <PERSON_2>" for a first name and a surname found apart) gives nothing away; until
    2026-12-07 such a value counted as missed."""
    return all(any(s.start <= i < s.end for s in spans) for i in range(start, end) if text[i].isalnum())


def score_redaction(sentences: list[PiiSentence], redactor: Redactor, *, seed: int = 0) -> RedactionScore:
    hits = []  # per sentence: (gold hidden, gold total, predicted overlapping gold, predicted)
    by_type: dict[str, list[int]] = {}
    misses, false_positives = [], []
    for sentence in sentences:
        spans = redactor.spans(sentence.text)
        gold = sentence.spans()
        hidden = 0
        for start, end, kind in gold:
            ok = _hidden(sentence.text, start, end, spans)
            hidden += ok
            by_type.setdefault(kind, [0, 0])
            by_type[kind][0] += ok
            by_type[kind][1] += 1
            if not ok:
                misses.append(f"{kind} {sentence.text[start:end]!r}")
        true = 0
        for s in spans:
            if any(s.start < end and s.end > start for start, end, _ in gold):
                true += 1
            else:
                false_positives.append(f"{s.kind} {sentence.text[s.start:s.end]!r}")
        hits.append((hidden, len(gold), true, len(spans)))
    table = np.array(hits, dtype=float)
    boot = Bootstrap(len(sentences), seed=seed)

    def ratio(num: int, den: int) -> Callable[[Any], float]:
        return lambda idx: float(table[idx, num].sum() / max(1.0, table[idx, den].sum()))

    everything = np.arange(len(sentences))
    return RedactionScore(
        recall=ratio(0, 1)(everything), recall_interval=boot.interval(ratio(0, 1)),
        precision=ratio(2, 3)(everything), precision_interval=boot.interval(ratio(2, 3)),
        recall_by_type={k: (v[0], v[1]) for k, v in sorted(by_type.items())},
        gold=int(table[:, 1].sum()), predicted=int(table[:, 3].sum()), misses=misses,
        false_positives=false_positives)


# -- 2. the leak test --------------------------------------------------------------------------------------------
@dataclass
class LeakResult:
    canaries: int
    requests: int  # bodies the cloud received on /v1
    logged: int  # requests in the vault's egress log
    leaked: list[str]  # canaries seen in any body
    entities: dict[str, int]  # replaced, by type, over all logged requests
    answers: list[tuple[str, str]]  # (question, restored answer), a sample for the report
    synthetic: int  # items the augmentation returned


def _canary_forms(value: str) -> list[re.Pattern[str]]:
    """What counts as the canary in a request body: the value as a whole word in any case (a substring would find
    "dev" in "device" and "Will" in "willow"), and as written for a one-word name that is also a word ("Hope": the
    body may say "I hope"); a number with six digits or more also as its digits alone."""
    one_word_word = " " not in value and is_dictionary_word(value)
    forms = [re.compile(rf"(?<!\w){re.escape(value)}(?!\w)", 0 if one_word_word else re.I)]
    digits = re.sub(r"\D", "", value)
    if len(digits) >= 6:
        forms.append(re.compile(rf"(?<!\d){digits}(?!\d)"))
    return forms


def _question_for(sentence: PiiSentence) -> str:
    """The sentence with its personal values taken out: a question that retrieval answers with that sentence."""
    text = sentence.text
    for value, _ in sentence.pii:
        text = text.replace(value, "")
    return "What do my notes say about this: " + " ".join(text.split())


def leak_test(sentences: list[PiiSentence], settings: Settings, *, questions: int | None = None,
              max_tokens: int = 24, tick: Callable[[int, int], None] | None = None) -> LeakResult:
    """Questions and one augmentation against a recording T-tier on loopback; count canaries in what it received."""
    with_pii = [s for s in sentences if s.pii]
    asked = with_pii[: questions if questions is not None else len(with_pii)]
    recorded: list[tuple[str, bytes]] = []
    with tempfile.TemporaryDirectory(prefix="pllm-privacy-") as tmp:
        home = Path(tmp)
        vault = create_vault(home / "vault.db", secrets.token_hex(16), name="Alex Morgan")
        add_sentences(vault, sentences)
        answers: list[tuple[str, str]] = []
        with serve_loopback(settings.model_copy(update={"home": home}), home / "cloud", device="leak-test",
                            record=recorded) as (url, key):
            device = settings.model_copy(update={"home": home, "cloud_url": url, "cloud_key": key,
                                                 "consent": {"cloud": "redacted"}})
            client = CloudClient(device, PrivacyGate(device, vault))
            runtime = Runtime.from_settings(device)
            assistant = Assistant(runtime, vault=vault, retrieval=RetrievalConfig(k=3, budget_tokens=256))
            config = GenerationConfig(max_tokens=max_tokens)
            total = len(asked) + 1
            for i, sentence in enumerate(asked):
                question = _question_for(sentence)
                answers.append((question, assistant.answer_remote(question, client, config).text))
                assistant.reset()
                if tick:
                    tick(i + 1, total)
            # `pllm augment`'s own path, every sentence a seed.
            augmented = augment_vault(device, vault, "texts", AugmentConfig(per_seed=1, seeds=len(sentences),
                                                                            max_tokens=max_tokens))
            if tick:
                tick(total, total)
            runtime.close()
        egress = vault.egress()
        vault.close()
    bodies = [json.dumps(json.loads(body), ensure_ascii=False) for path, body in recorded if path.startswith("/v1/")]
    canaries = [value for s in with_pii for value, _ in s.pii]
    leaked = [value for value in canaries
              if any(form.search(body) for form in _canary_forms(value) for body in bodies)]
    entities: Counter[str] = Counter()
    for e in egress:
        entities.update(e.entities)
    return LeakResult(len(canaries), len(bodies), len(egress), leaked, dict(entities.most_common()), answers[:5],
                      augmented.outcome.report.proposed)


# -- both, and the report ----------------------------------------------------------------------------------------
@dataclass
class PrivacyResult:
    sentences: int
    alone: RedactionScore
    with_vault: RedactionScore
    leak: LeakResult | None
    model: str = "none"  # the gate's second opinion (PLLM_GATE_MODEL): none, or the model file's name

    def as_json(self) -> dict[str, Any]:
        def score(s: RedactionScore) -> dict[str, Any]:
            return {"recall": round(s.recall, 4), "recall_interval": [round(v, 4) for v in s.recall_interval],
                    "precision": round(s.precision, 4),
                    "precision_interval": [round(v, 4) for v in s.precision_interval],
                    "recall_by_type": {k: {"hidden": h, "total": t} for k, (h, t) in s.recall_by_type.items()},
                    "gold": s.gold, "predicted": s.predicted, "misses": s.misses,
                    "false_positives": s.false_positives}

        out: dict[str, Any] = {"task": "privacy", "sentences": self.sentences, "gate_model": self.model,
                               "gate_alone": score(self.alone),
                               "gate_with_vault": score(self.with_vault)}
        if self.leak is not None:
            leak = self.leak
            out["leak_test"] = {"canaries": leak.canaries, "requests": leak.requests, "logged": leak.logged,
                                "leaked": leak.leaked, "entities_replaced": leak.entities,
                                "synthetic_items": leak.synthetic}
        return out


def redaction_with_vault(sentences: list[PiiSentence], model: PiiModel | None = None) -> Redactor:
    """The redactor a device would have once these sentences are in its vault."""
    with tempfile.TemporaryDirectory(prefix="pllm-privacy-") as tmp:
        vault = create_vault(Path(tmp) / "vault.db", secrets.token_hex(16), name="Alex Morgan")
        add_sentences(vault, sentences)
        known = known_entities(vault)
        vault.close()
    return Redactor(known, model=model)


def example_bank_rows(folder: Path = DEFAULT_DATA.parent) -> list[dict[str, Any]]:
    """The gate's example bank (`pii_model.EXAMPLE_BANK`): every labelled sentence of the development sets, by set;
    the held-out sets stay out."""
    return [{"set": path.stem, "text": s.text, "pii": [list(p) for p in s.pii]}
            for path in sorted(folder.glob("pii-*.jsonl")) if path.stem not in HELD_OUT_SETS
            for s in load_sentences(path)]


def write_example_bank(out: Path) -> int:
    """Write the bank as the package ships it; how many sentences (`python -m pllm.bench.privacy bank`)."""
    rows = example_bank_rows()
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def run_privacy(sentences: list[PiiSentence], settings: Settings, *, leak: bool = True,
                tick: Callable[[int, int], None] | None = None) -> PrivacyResult:
    model = load_pii_model(settings)
    if model is not None:  # the model is never shown the evaluated set's answers, nor its writer's other sentences
        model.withhold_sets_of(s.text for s in sentences)
    try:
        return PrivacyResult(
            sentences=len(sentences),
            alone=score_redaction(sentences, Redactor([], model=model)),
            with_vault=score_redaction(sentences, redaction_with_vault(sentences, model)),
            leak=leak_test(sentences, settings, questions=LEAK_QUESTIONS, tick=tick) if leak else None,
            model=settings.foundation_model if model is not None else "none")
    finally:
        if model is not None:  # the reader is shared by every gate of the process
            model.withhold_sets_of(())


def write_privacy_report(result: PrivacyResult, folder: Path, *, command: str, machine: str) -> None:
    report = Report("Privacy gate: redaction and the leak test", command=command, machine=f"Machine: {machine}")
    report.add(f"{result.sentences} labelled sentences ({result.alone.gold} personal values); 95% bootstrap intervals "
               "over sentences.")
    rows = ["| gate | recall | precision | values | replaced spans |", "|---|---|---|---|---|"]
    rules = "patterns + NER" + (f" + the model ({result.model})" if result.model != "none" else "")
    for name, s in ((rules, result.alone), ("with the vault's knowledge", result.with_vault)):
        rows.append(f"| {name} | {with_interval(s.recall, s.recall_interval)} | "
                    f"{with_interval(s.precision, s.precision_interval)} | {s.gold} | {s.predicted} |")
    report.add(*rows)
    report.add("Recall by type (with the vault's knowledge):", "", "| type | hidden | of |", "|---|---|---|",
               *[f"| {k} | {h} | {t} |" for k, (h, t) in result.with_vault.recall_by_type.items()])
    for title, items in (("Missed (with the vault)", result.with_vault.misses),
                         ("Replaced but not personal (with the vault)", result.with_vault.false_positives)):
        report.add(f"{title}: " + ("; ".join(items) if items else "none"))
    if result.leak is not None:
        leak = result.leak
        report.add("## Leak test")
        report.add(f"{leak.canaries} canaries in the vault; the T-tier received {leak.requests} requests; the vault's "
                   f"egress log holds {leak.logged}. Canaries seen in any request body: **{len(leak.leaked)}**"
                   + (f" ({', '.join(leak.leaked)})" if leak.leaked else "") + ".")
        report.add("Entities replaced over all requests: " + ", ".join(f"{k} {v}" for k, v in leak.entities.items())
                   + ".")
        report.add(f"The augmentation returned {leak.synthetic} synthetic items. A sample of questions and the "
                   "answers as restored on the device:", "",
                   *[f"- {q} -> {' '.join(a.split())[:160]}" for q, a in leak.answers])
    report.write(folder, result.as_json())


if __name__ == "__main__":
    import sys

    from pllm.personal.pii_model import EXAMPLE_BANK

    if sys.argv[1:] != ["bank"]:
        sys.exit("usage: python -m pllm.bench.privacy bank   (writes the gate's example bank from data/privacy)")
    target = Path(__file__).resolve().parents[1] / "data" / EXAMPLE_BANK
    sys.stdout.write(f"{write_example_bank(target)} sentences -> {target}\n")
