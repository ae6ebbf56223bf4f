"""T -> E distillation, its first half: the T-model writes question/answer pairs about a domain's topics, and the
pairs that pass the filters become the expert's training data.

    pairs, report = distil_pairs(t_model, domain, DistillConfig(per_topic=4), embedder)

The T-model is the cloud's `Foundation`. An instruct one (Qwen2.5 1.5B, the default, or an upstream server) is
asked once per topic for `per_topic` pairs as a JSON list whose grammar constrains decoding; a base one (Gemma 3
270M) continues a few-shot page of a guide ("Topic: ... Q: ... A: ...") `per_topic` times. Filters, cheap first:
malformed (no question mark, too short or long, an answer that only repeats the question), exact duplicates, near
duplicates (embedding cosine to a kept question), and leaks: a pair whose question is close to one of the exam's is
dropped, so the exam stays unseen.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pllm.expert.domains import QA, Domain
from pllm.filters import FilterCounts
from pllm.lm.runtime import GenerationConfig, Usage, json_list_items

if TYPE_CHECKING:
    from pllm.lm.embeddings import Embedder

PAIR = re.compile(r"Q:\s*(?P<q>[^\n]+?)\s*\nA:\s*(?P<a>[^\n]+)")
FILTERS = ("malformed", "duplicate", "near_duplicate", "exam_leak")


class TextModel(Protocol):
    """What distillation needs of the T-model (the cloud's `Foundation` is one)."""

    name: str
    instruct: bool

    def complete_stream(self, prompt: str, config: GenerationConfig, usage: Usage) -> Iterator[str]: ...

    def chat_stream(self, messages: Sequence[dict[str, str]], config: GenerationConfig, usage: Usage
                    ) -> Iterator[str]: ...


@dataclass(frozen=True)
class DistillConfig:
    per_topic: int = 4  # T-model calls per topic (each writes one or more pairs)
    max_tokens: int = 160
    temperature: float = 0.8
    near_duplicate: float = 0.9  # question cosine to a kept question at or above this: a near duplicate
    exam_leak: float = 0.8  # question cosine to an exam question at or above this: dropped
    question_words: tuple[int, int] = (3, 30)
    answer_words: tuple[int, int] = (4, 70)
    seed: int = 0


@dataclass
class DistillReport(FilterCounts):
    """What distillation cost the T-model and what its filters kept."""

    names: tuple[str, ...] = FILTERS
    t_model: str = ""
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:  # type: ignore[override]
        return {"t_model": self.t_model, "requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 1),
                **super().as_dict()}


def guide_prompt(domain: Domain, topic: str) -> str:
    """A page of a guide the T-model continues: the domain's demonstrations, then the topic and an open question."""
    lines = [f"The following are questions and answers from a reliable guide to {domain.title.lower()}. "
             "Each answer is one or two clear, correct sentences.\n"]
    for demo in domain.demonstrations:
        lines.append(f"Q: {demo.question}\nA: {demo.answer}\n")
    lines.append(f"Topic: {topic}\nQ:")
    return "\n".join(lines)


def parse_pairs(text: str) -> list[QA]:
    """The pairs in a continuation that starts right after "Q:"."""
    return [QA(m["q"].strip(), m["a"].strip()) for m in PAIR.finditer("Q:" + text)]


def instruction_messages(domain: Domain, topic: str, n: int) -> list[dict[str, str]]:
    """The chat that asks an instruct T-model for `n` question/answer pairs about one topic of the domain."""
    demos = "\n".join(f"Q: {d.question}\nA: {d.answer}" for d in domain.demonstrations)
    return [{"role": "system", "content": f"You are a careful expert in {domain.title.lower()}. You write questions "
                                          "people really ask, with correct answers of one or two clear sentences."},
            {"role": "user", "content": f"Examples of the style:\n{demos}\n\nWrite {n} different questions a person "
                                        f"might ask about this topic: {topic}. Give each a correct answer of one or "
                                        f"two clear sentences. Answer with a JSON list of {n} objects with the keys "
                                        "\"question\" and \"answer\"."}]


def pairs_schema(n: int, max_tokens: int = 160) -> str:
    """A JSON list of `n` question-answer pairs, their characters capped by the pair's token budget (English runs
    about 4 characters a token) so that the list fits the budget write_pairs gives it."""
    question_chars, answer_chars = max(16, min(200, 2 * max_tokens)), max(16, min(480, 3 * max_tokens))
    question = {"type": "string", "minLength": 8, "maxLength": question_chars}
    answer = {"type": "string", "minLength": 8, "maxLength": answer_chars}
    pair = {"type": "object", "properties": {"question": question, "answer": answer},
            "required": ["question", "answer"], "additionalProperties": False}
    return json.dumps({"type": "array", "items": pair, "minItems": n, "maxItems": n})


def write_pairs(t_model: TextModel, domain: Domain, config: DistillConfig, report: DistillReport,
                tick: Callable[[], None] = lambda: None) -> list[QA]:
    """Every pair the T-model wrote, unfiltered: an instruct model is asked once per topic for `per_topic` pairs;
    a base model continues the guide `per_topic` times per topic (seeds differ)."""
    pairs: list[QA] = []
    report.t_model = t_model.name
    started = time.perf_counter()
    for t, topic in enumerate(domain.topics):
        calls = 1 if getattr(t_model, "instruct", False) else config.per_topic
        for k in range(calls):
            usage = Usage()
            if calls == 1:
                sampling = GenerationConfig(max_tokens=config.per_topic * (config.max_tokens + 16) + 8,
                                            temperature=config.temperature, seed=config.seed + 1000 * t,
                                            json_schema=pairs_schema(config.per_topic, config.max_tokens))
                text = "".join(t_model.chat_stream(instruction_messages(domain, topic, config.per_topic), sampling,
                                                   usage))
                pairs.extend(parse_json_pairs(text))
            else:
                sampling = GenerationConfig(max_tokens=config.max_tokens, temperature=config.temperature,
                                            seed=config.seed + 1000 * t + k, stop=("\nTopic:", "\n\n\n"))
                pairs.extend(parse_pairs("".join(t_model.complete_stream(guide_prompt(domain, topic), sampling,
                                                                          usage))))
            report.requests += 1
            report.prompt_tokens += usage.prompt_tokens
            report.completion_tokens += usage.completion_tokens
        tick()
    report.seconds += time.perf_counter() - started
    return pairs


def parse_json_pairs(text: str) -> list[QA]:
    """The pairs of an instruct model's JSON answer (nothing where it is not the JSON asked for)."""
    rows = json_list_items(text) or []
    return [QA(" ".join(str(r["question"]).split()), " ".join(str(r["answer"]).split()))
            for r in rows if isinstance(r, dict) and "question" in r and "answer" in r]


def _well_formed(pair: QA, config: DistillConfig) -> bool:
    q_words, a_words = len(pair.question.split()), len(pair.answer.split())
    low_q, high_q = config.question_words
    low_a, high_a = config.answer_words
    if not pair.question.endswith("?") or not low_q <= q_words <= high_q or not low_a <= a_words <= high_a:
        return False
    return _normal(pair.answer) != _normal(pair.question) and _normal(pair.question) not in _normal(pair.answer)


def _normal(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def filter_pairs(pairs: Sequence[QA], domain: Domain, embedder: Embedder, config: DistillConfig,
                 report: DistillReport) -> list[QA]:
    """The filters of the module docstring, in order; counts what each dropped into `report`."""
    report.proposed += len(pairs)
    exam = {_normal(qa.question) for qa in domain.exam}
    candidates: list[QA] = []
    seen: set[str] = set()
    for pair in pairs:
        key = _normal(pair.question)
        if not _well_formed(pair, config):
            report.drop("malformed")
        elif key in exam:
            report.drop("exam_leak")
        elif key in seen:
            report.drop("duplicate")
        else:
            seen.add(key)
            candidates.append(pair)
    if not candidates:
        return []
    vectors = embedder.encode([p.question for p in candidates])
    exam_vectors = embedder.encode([qa.question for qa in domain.exam])
    leak = (vectors @ exam_vectors.T).max(axis=1) >= config.exam_leak
    kept: list[QA] = []
    kept_vectors: list[np.ndarray] = []
    for pair, vector, leaked in zip(candidates, vectors, leak, strict=True):
        if leaked:
            report.drop("exam_leak")
        elif kept_vectors and float(np.max(np.stack(kept_vectors) @ vector)) >= config.near_duplicate:
            report.drop("near_duplicate")
        else:
            kept.append(pair)
            kept_vectors.append(vector)
    report.kept += len(kept)
    return kept


def distil_pairs(t_model: TextModel, domain: Domain, config: DistillConfig, embedder: Embedder,
                 tick: Callable[[], None] = lambda: None) -> tuple[list[QA], DistillReport]:
    """The T-model's pairs for `domain` that passed the filters, and the report of what it cost and dropped."""
    report = DistillReport()
    written = write_pairs(t_model, domain, config, report, tick)
    return filter_pairs(written, domain, embedder, config, report), report
