"""The cloud half of CDCDA: from a user's few (already redacted) seed items, the T-model writes new ones.

An instruct T-model (Qwen2.5 1.5B, the default) is asked once per seed, through its chat template: the person's
items, then the seed and its label, and an instruction to write `n` new texts *for that label* in the person's voice,
answered as a JSON list whose grammar constrains decoding (so it always parses), and the prompt is paid for once per
seed rather than once per item.

A base T-model (Gemma 3 270M) cannot follow such an instruction. For each seed it sees the person's other items
first (the request's `context`, then its other seeds), then that seed, each as "Label: ... / Text: ...", and
continues after its label once more: `n` sampled continuations (different seeds per sample, so they differ). The
label comes before the text so that a base model writes a text *for* it, as the person's same-label texts go; shown
one seed alone, text first, Gemma 3 270M mostly wrote texts of another kind (docs/BENCHMARKS.md). A label travels
with its seed: the device checks afterwards, with the user's own scorer, that each new text still fits it.

    items = augment(foundation, AugmentRequest(task="tweet paraphrase", seeds=[Seed("Loving the rain today")], n=3))
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from pllm.lm.foundation import Foundation
from pllm.lm.runtime import GenerationConfig, Usage, json_list_items

PREAMBLE = "Here are texts written by one person. {task_line}Each new text is on a related topic, in the same style \
and voice, and says something new.\n\n"
CONTEXT_SEEDS = 8  # other seeds shown before the one being extended
CHARS_PER_TOKEN = 6  # a new text's character cap per token of its budget (English averages about 4)


@dataclass(frozen=True)
class Seed:
    text: str
    label: str | None = None


@dataclass(frozen=True)
class AugmentRequest:
    task: str
    seeds: list[Seed]
    context: list[Seed] = field(default_factory=list)  # more of the person's items, shown but not extended
    n: int = 3  # new items per seed
    max_tokens: int = 96  # per new item
    temperature: float = 0.9
    seed: int = 0
    mode: str = "auto"  # auto: one JSON list per seed where the T-model follows instructions; samples: n requests


@dataclass(frozen=True)
class SyntheticItem:
    seed: int  # index of the seed it came from
    text: str
    label: str | None


@dataclass
class AugmentResult:
    items: list[SyntheticItem] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    requests: int = 0
    seconds: float = 0.0  # the T-model's time
    unparsed: int = 0  # answers that were not the JSON asked for (an upstream without grammars)

    def add(self, usage: Usage) -> None:
        self.requests += 1
        self.usage.prompt_tokens += usage.prompt_tokens
        self.usage.completion_tokens += usage.completion_tokens


def _example(seed: Seed) -> str:
    label_line = f"Label: {seed.label}\n" if seed.label is not None else ""
    return f"{label_line}Text: {' '.join(seed.text.split())}\n\n"


def seed_prompt(task: str, seeds: list[Seed], index: int, context: list[Seed] | None = None) -> str:
    """The prompt that extends `seeds[index]`: the person's other items (`context`, then the other seeds; at most
    CONTEXT_SEEDS, the nearest kept), that seed, and its label (if any) once more."""
    target = seeds[index]
    others = [*(context or []), *(s for n, s in enumerate(seeds) if n != index)][-CONTEXT_SEEDS:]
    task_line = f"They are {task}. " if task else ""
    label_line = f"Label: {target.label}\n" if target.label is not None else ""
    return (PREAMBLE.format(task_line=task_line) + "".join(map(_example, [*others, target]))
            + f"{label_line}Text:")


def clean(text: str) -> str:
    """The new text alone: the model's first paragraph, without a "Label:" line it may add."""
    text = text.strip().split("\n\n")[0]
    lines = [line for line in text.splitlines() if not line.lower().startswith(("label:", "text:"))]
    return " ".join(" ".join(lines).split())


def instruction_messages(task: str, seeds: list[Seed], index: int, n: int,
                         context: list[Seed] | None = None) -> list[dict[str, str]]:
    """The chat that asks an instruct T-model for `n` new texts like `seeds[index]`, with its label."""
    target = seeds[index]
    others = [*(context or []), *(s for k, s in enumerate(seeds) if k != index)][-CONTEXT_SEEDS:]
    about = f"They are {task}. " if task else ""
    label = (f' Each is one this person would give the label "{target.label}", as they gave it to the last text.'
             if target.label is not None else "")
    return [{"role": "system", "content": INSTRUCT_SYSTEM},
            {"role": "user", "content": f"Here are texts written by one person. {about}\n\n"
             + "".join(map(_example, others)) + "The text to write more like:\n\n" + _example(target)
             + f"Write {n} new texts by this person, each on a different related topic, in the same style, voice and "
               f"length, each saying something new.{label} Answer with a JSON list of {n} strings."}]


INSTRUCT_SYSTEM = ("You write realistic new examples of one person's texts, to train their personal assistant. Keep "
                   "their voice, style, length and interests; never copy a text.")


def list_schema(n: int, max_chars: int) -> str:
    """A JSON list of exactly `n` non-empty strings of at most `max_chars` characters each."""
    item = {"type": "string", "minLength": 1, "maxLength": max_chars}
    return json.dumps({"type": "array", "items": item, "minItems": n, "maxItems": n})


def augment(foundation: Foundation, request: AugmentRequest) -> AugmentResult:
    """`n` new texts per seed; empty texts and verbatim copies of the seed are dropped here already."""
    result = AugmentResult()
    started = time.perf_counter()
    listed = request.mode == "list" or (request.mode == "auto" and getattr(foundation, "instruct", False))
    for index, seed in enumerate(request.seeds):
        texts = _as_list(foundation, request, index, result) if listed else _as_samples(foundation, request, index,
                                                                                        result)
        for text in texts:
            if text and text.lower() != " ".join(seed.text.split()).lower():
                result.items.append(SyntheticItem(index, text, seed.label))
    result.seconds = time.perf_counter() - started
    return result


def _as_list(foundation: Foundation, request: AugmentRequest, index: int, result: AugmentResult) -> list[str]:
    """One request: the seed's n new texts as a JSON list (decoding constrained by its grammar)."""
    usage = Usage()
    messages = instruction_messages(request.task, request.seeds, index, request.n, request.context)
    config = GenerationConfig(max_tokens=request.n * (request.max_tokens + 8) + 8, temperature=request.temperature,
                              seed=request.seed * 1000 + index * 31,
                              json_schema=list_schema(request.n, CHARS_PER_TOKEN * request.max_tokens))
    answer = "".join(foundation.chat_stream(messages, config, usage))
    result.add(usage)
    texts = json_list_items(answer)
    if texts is None:
        result.unparsed += 1
        return []
    return [clean(t) for t in texts if isinstance(t, str)]


def _as_samples(foundation: Foundation, request: AugmentRequest, index: int, result: AugmentResult) -> list[str]:
    """n sampled continuations of the few-shot prompt (a base model), each a request of its own."""
    prompt = seed_prompt(request.task, request.seeds, index, request.context)
    texts = []
    for k in range(request.n):
        usage = Usage()
        config = GenerationConfig(max_tokens=request.max_tokens, temperature=request.temperature,
                                  seed=request.seed * 1000 + index * 31 + k, stop=("\nText:", "\nLabel:", "\n\n"))
        texts.append(clean("".join(foundation.complete_stream(prompt, config, usage))))
        result.add(usage)
    return texts
