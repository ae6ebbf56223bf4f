"""The neural adaptation layer (ASLS): turn what the vault holds into a LoRA adapter, gate it, promote it.

Training data, all from the vault (forgotten items never):
  (a) self-supervised: the user's own texts as targets ("Write, in my words, about <topic>" -> the text);
  (b) supervised: answers the user accepted, answers the user edited (the edit is the target), and the facts the
      profiling layer learned, asked a few ways ("What is my cat called?" -> "Your cat is called Pixel.");
  (c) preference pairs from feedback: an edit is chosen over the answer it replaced (trained with DPO);
  (d) replay: general chat the base model answered itself (shipped), so the adapter does not forget how to talk.

A run snapshots its training set (encrypted) before the first step, so a run killed at any moment resumes with the
same data; the active adapter changes only in the final promote, one vault transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

from pllm.config import Settings
from pllm.lm.adapter import Purpose, learning_rate, train_adapter, train_config
from pllm.lm.hardware import cpu_info
from pllm.lm.models import resolve_model, runtime_model
from pllm.lm.runtime import Runtime
from pllm.lm.train import Example, LoraSettings, Preference, TrainConfig
from pllm.personal.adapters import AdapterStore, EncryptedStorage, MergeUnsupportedError
from pllm.personal.assistant import SYSTEM_PROMPT
from pllm.personal.gate import decide, score_candidate
from pllm.personal.items import accepts
from pllm.personal.profile import build_profile
from pllm.personal.records import new_since
from pllm.personal.text import TOPIC_STOPWORDS, WORD
from pllm.personal.vault import Vault, content_hash, fact_hash

JOB = "job"  # prefix of the interrupted-run files in the adapter folder

FACT_QUESTIONS = {  # fact key -> three ways a user asks about it (two train, one is held out), the answer's shape
    "name": (["What is my name?", "Who am I?", "Do you know my name?"], "Your name is {v}."),
    "lives in": (["Where do I live?", "Which city do I live in?", "Where is my home?"], "You live in {v}."),
    "from": (["Where am I from?", "Where do I come from?", "Where did I grow up?"], "You are from {v}."),
    "works as": (["What do I do for a living?", "What is my job?", "What is my profession?"], "You work as {v}."),
    "works at": (["Where do I work?", "Who do I work for?", "Where is my job?"], "You work at {v}."),
    "allergic to": (["What am I allergic to?", "Do I have any allergies?", "Which allergy do I have?"],
                    "You are allergic to {v}."),
    "birthday": (["When is my birthday?", "What is my birthday?", "What day was I born?"], "Your birthday is {v}."),
}


@dataclass
class TrainingSet:
    examples: list[Example]
    pairs: list[Preference]
    held_personal: list[Example]
    held_general: list[Example]
    counts: dict[str, int] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)  # content hashes of the vault items it was built from
    held_facts: list[tuple[Example, str]] = field(default_factory=list)  # a never-trained phrasing, the value

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainingSet:
        raw = json.loads(data)

        def ex(d: dict[str, Any]) -> Example:
            return Example(tuple(tuple(m) for m in d["messages"]), d["target"])  # type: ignore[arg-type]

        return cls([ex(d) for d in raw["examples"]],
                   [Preference(tuple(tuple(m) for m in d["messages"]), d["chosen"], d["rejected"])  # type: ignore[arg-type]
                    for d in raw["pairs"]],
                   [ex(d) for d in raw["held_personal"]], [ex(d) for d in raw["held_general"]], raw["counts"],
                   raw.get("sources", []), [(ex(d), value) for d, value in raw.get("held_facts", [])])


def _chat(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]


def replay_examples() -> list[Example]:
    text = resources.files("pllm.data").joinpath("replay.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [Example.of(_chat(r["prompt"]), r["answer"]) for r in rows]


def fact_examples(key: str, value: str) -> list[Example]:
    """Question/answer pairs for one fact the profile holds; the last one is for the held-out check."""
    if key in FACT_QUESTIONS:
        questions, answer = FACT_QUESTIONS[key]
    elif key.endswith(" name"):
        thing = key[: -len(" name")]
        questions, answer = ([f"What is my {thing} called?", f"What's the name of my {thing}?",
                              f"What is my {thing}'s name?"], f"Your {thing} is called {{v}}.")
    elif key.startswith("favourite "):
        thing = key[len("favourite "):]
        questions, answer = ([f"What is my favourite {thing}?", f"Which {thing} do I like best?",
                              f"Tell me my favourite {thing}."], f"Your favourite {thing} is {{v}}.")
    else:
        return []
    return [Example.of(_chat(q), answer.format(v=value)) for q in questions]


def _topic(text: str) -> str:
    """The first three distinct content words: enough of a cue for "write about ..." prompts."""
    words = [w for w in WORD.findall(text.lower()) if len(w) > 3 and w not in TOPIC_STOPWORDS]
    return ", ".join(list(dict.fromkeys(words))[:3]) or "my day"


def _held_out(key: str) -> bool:
    """About one in seven personal items is held out for the gate, chosen by content so reruns agree."""
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % 7 == 0


def collect(vault: Vault, synthetic_ratio: float = 0.0) -> TrainingSet:
    """The training set from the vault. Synthetic items (CDCDA, `pllm augment`) join the training examples, newest
    first, at most `synthetic_ratio` per text of the user's own; never the held-out sets the gate judges on."""
    forgotten = vault.forgotten_hashes()
    examples: list[Example] = []
    held: list[Example] = []
    facts = [(f, qa) for f in build_profile(vault).facts if (qa := fact_examples(f.key, f.value))]
    # A held-out text must be new to the adapter in every form: one that states a trained fact trains instead.
    trained_values = [f.value.lower() for f, _ in facts]
    counts = {"texts": 0, "accepted": 0, "edits": 0, "facts": 0, "pairs": 0, "replay": 0, "synthetic": 0}
    sources: set[str] = set()

    def add(group: str, items: list[Example], kind: str) -> None:
        states_a_fact = any(v in e.target.lower() for e in items for v in trained_values)
        (held if _held_out(group) and not states_a_fact else examples).extend(items)
        counts[kind] += len(items)

    for doc in vault.documents():
        if doc.content_hash in forgotten or doc.speaker:  # another person's words are not the user's to learn
            continue
        sources.add(doc.content_hash)
        add(doc.content_hash, [Example.of(_chat(f"Write, in my words, about {_topic(doc.content)}."), doc.content)],
            "texts")
    allowed = int(synthetic_ratio * counts["texts"])
    synthetic = [s for s in reversed(vault.synthetic_items()) if s.content_hash not in forgotten][:allowed]
    for item in synthetic:
        sources.add(item.content_hash)  # forgetting it (or its seed) retires the versions that trained on it
        examples.append(Example.of(_chat(f"Write, in my words, about {_topic(item.content)}."), item.content))
    counts["synthetic"] = len(synthetic)
    interactions = {i.id: i for i in vault.interactions()}
    pairs: list[Preference] = []
    feedback = vault.feedback()
    edited = {f.interaction_id for f in feedback if f.kind == "edit"}
    for f in feedback:
        i = interactions.get(f.interaction_id)
        if i is None or content_hash(i.prompt) in forgotten:
            continue
        sources.add(content_hash(i.prompt))  # forgetting an interaction records its prompt's hash too
        if f.kind == "edit" and f.value:
            add(f"edit:{f.id}", [Example.of(_chat(i.prompt), f.value)], "edits")
            pairs.append(Preference(Example.of(_chat(i.prompt), "").messages, f.value, i.answer))
        elif accepts(f) and i.id not in edited:
            add(f"up:{i.id}", [Example.of(_chat(i.prompt), i.answer)], "accepted")
    held_facts: list[tuple[Example, str]] = []
    for fact, qa in facts:
        sources.add(fact_hash(fact.key, fact.value))
        # Two phrasings train, three times each (a fact is a few tokens: it needs repetition, not length);
        # the third phrasing is the gate's held-out question: does the answer name the value?
        examples.extend(qa[:-1] * 3)
        held_facts.append((qa[-1], fact.value))
        counts["facts"] += len(qa)
    counts["pairs"] = len(pairs)
    replay = replay_examples()
    general_held = replay[-8:]
    mix = replay[:-8][: max(16, len(examples))]  # at least as much general chat as personal data
    counts["replay"] = len(mix)
    return TrainingSet(examples + mix, pairs, held, general_held, counts, sorted(sources), held_facts)


@dataclass(frozen=True)
class Decision:
    train: bool
    reason: str
    steps: int
    lr: float


@dataclass(frozen=True)
class AdaptationPolicy:
    """When to train, how much, and how fast (ASLS's adaptive part)."""

    min_feedback: int = 5  # new feedback events that justify a run
    min_tokens: int = 2000  # new tokens of the user's own text that justify a run
    max_age_days: float = 7.0  # train at least this often when anything new arrived
    epochs: float = 4.0  # passes over the data
    batch_size: int = 8
    min_steps: int = 16  # small updates still need repetition for a fact to stick
    max_steps: int = 20  # a 100-item update: ~45 s of fp32 training on two AVX2 cores (pllm bench)
    lora: LoraSettings = field(default_factory=LoraSettings)  # the adapter's shape

    def plan(self, n_examples: int) -> tuple[int, float]:
        steps = round(self.epochs * n_examples / self.batch_size)
        steps = max(self.min_steps, min(self.max_steps, steps))
        return steps, learning_rate(Purpose.PERSONAL, n_examples)

    def decide(self, vault: Vault, n_examples: int, *, force: bool = False) -> Decision:
        steps, lr = self.plan(n_examples)
        since = float(vault.get_meta("adapted_at", "0") or 0)
        arrived = new_since(vault, since)
        new_feedback, new_tokens, new_interactions = arrived.feedback, arrived.tokens, arrived.interactions
        age_days = (time.time() - since) / 86400 if since else float("inf")
        if force:
            return Decision(True, "asked to train now", steps, lr)
        if n_examples == 0:
            return Decision(False, "nothing to train on yet: ingest texts or give feedback first", steps, lr)
        if new_feedback >= self.min_feedback:
            return Decision(True, f"{new_feedback} new feedback events (threshold {self.min_feedback})", steps, lr)
        if new_tokens >= self.min_tokens:
            return Decision(True, f"{new_tokens} new tokens of your texts (threshold {self.min_tokens})", steps, lr)
        if not since:
            return Decision(True, f"never adapted yet, and there are {n_examples} examples", steps, lr)
        if age_days >= self.max_age_days and (new_feedback or new_tokens or new_interactions):
            return Decision(True, f"last adapted {age_days:.0f} days ago and there is new data", steps, lr)
        return Decision(False, f"not enough new signal: {new_feedback} feedback events, {new_tokens} new tokens "
                               f"(thresholds {self.min_feedback} and {self.min_tokens})", steps, lr)


@dataclass
class AdaptReport:
    # The fields `pllm adapt --json` documents come first, in this order.
    version: str | None
    steps: int
    seconds: float
    train_tokens_per_second: float
    peak_rss_mb: float
    personal_before: float
    personal_after: float
    general_before: float
    general_after: float
    promoted: bool
    resumed_from: int
    reason: str
    counts: dict[str, int]
    train_dtype: str
    cpu: dict[str, Any]
    prepare_seconds: float
    facts_held_out: int
    facts_before: int
    facts_after: int
    texts_held_out: int

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("seconds", "train_tokens_per_second", "peak_rss_mb", "personal_before", "personal_after",
                    "general_before", "general_after", "prepare_seconds"):
            out[key] = round(out[key], 4)
        return out


def run_adaptation(settings: Settings, vault: Vault, *, policy: AdaptationPolicy | None = None,
                   on_step: Callable[[int, int, float], None] | None = None,
                   on_phase: Callable[[str], None] | None = None, promote: bool = True,
                   training: TrainingSet | None = None, force: bool = False) -> AdaptReport:
    """Train (or resume) one adapter version, gate it, store it encrypted, promote it if it passed.

    `training` is the set the caller already collected (to ask the policy); a resumed run ignores it and uses its
    own snapshot.
    """
    policy = policy or AdaptationPolicy()
    store = AdapterStore(vault, settings.paths.adapters)
    job = EncryptedStorage(store, JOB)
    snapshot = job.read("data")
    if snapshot is None:  # a fresh run: freeze its data first, so a killed run resumes with exactly this set
        training = training or collect(vault, settings.synthetic_ratio)
        steps, lr = policy.plan(len(training.examples))
        config = train_config(settings, Purpose.PERSONAL, lora=policy.lora, steps=steps, lr=lr,
                              batch_size=policy.batch_size)
        job.write("data", training.to_bytes())
        job.write("config", json.dumps(asdict(config)).encode())
    else:  # a resumed run keeps its own data and config (its dtype too: the checkpoint was made with it)
        training = TrainingSet.from_bytes(snapshot)
        config = TrainConfig.from_dict(json.loads(job.read("config") or b"{}"))
    model_file = resolve_model(settings)
    # The torch copy is freed: the gate judges the GGUF that llama.cpp will serve.
    trained = train_adapter(settings, training.examples, config, model_file=model_file, pairs=training.pairs,
                            storage=job, on_step=on_step, on_phase=on_phase)
    result, gguf = trained.result, trained.gguf
    if on_phase:
        on_phase("gate: the exported adapter on llama.cpp, on held-out data")
    runtime = Runtime.from_settings(settings)
    try:
        evidence = score_candidate(runtime, gguf, facts=training.held_facts, texts=training.held_personal,
                                   general=training.held_general)
    finally:
        runtime.close()
    passed, why = decide(evidence, force=force)
    scores = {k: getattr(evidence, k) for k in ("personal_before", "personal_after", "general_before",
                                                  "general_after")}
    stats = {"counts": training.counts, "steps": config.steps, "lr": config.lr, "final_loss": result.losses[-1],
             "seconds": result.seconds, "train_dtype": config.dtype, "cpu": cpu_info().model,
             **evidence.as_dict(), "gate": why}
    version = store.save(gguf=gguf, peft=trained.safetensors(),
                         base_model=model_file.name, lora={**asdict(config.lora)}, stats=stats,
                         trained_on=training.sources)
    promoted = passed and promote
    if promoted:
        if settings.merge_adapters:  # built here, so `pllm serve` finds it ready when it serves the new version
            if on_phase:
                on_phase("merge: the adapter folded into a copy of the model for serving")
            with contextlib.suppress(MergeUnsupportedError):  # then `pllm serve` applies it unmerged
                store.merged_model(version, runtime_model(settings).path)
        store.promote(version)
    else:
        store.set_status(version, "rejected" if not passed else "candidate")
    for name in ("data", "config"):
        job.delete(name)
    vault.set_meta("adapted_at", str(time.time()))
    return AdaptReport(version=version, steps=config.steps, seconds=result.seconds,
                       train_tokens_per_second=result.tokens_per_second, peak_rss_mb=result.peak_rss_mb, **scores,
                       promoted=promoted, resumed_from=result.resumed_from, reason=why, counts=training.counts,
                       train_dtype=config.dtype, cpu=cpu_info().as_dict(), prepare_seconds=result.prepare_seconds,
                       facts_held_out=evidence.facts, facts_before=evidence.facts_before,
                       facts_after=evidence.facts_after, texts_held_out=evidence.texts)


def pending_job(store: AdapterStore) -> bool:
    """Whether a killed run left data to resume."""
    return EncryptedStorage(store, JOB).exists("data")


def discard_pending_job(store: AdapterStore, forgotten: frozenset[str]) -> bool:
    """Destroy a killed run's snapshot and checkpoint if they hold a forgotten item (or do not say what they hold)."""
    job = EncryptedStorage(store, JOB)
    data = job.read("data")
    if data is None:
        return False
    sources = set(TrainingSet.from_bytes(data).sources)
    if sources and not sources & forgotten:
        return False
    for name in ("data", "config", "checkpoint"):
        job.delete(name)
    return True
