"""The cloud half of CDCDA: from a user's few (already redacted) seed items, the T-model writes new ones.

For each seed the model sees the person's other items first (the request's `context`, then its other seeds), then
that seed, each as "Label: ... / Text: ...", and continues after its label once more: `n` sampled continuations
(different seeds per sample, so they differ). The label comes before the text so that a base model writes a text
*for* it, as the person's same-label texts go, and the other items show it the person's world; shown one seed alone,
text first, Gemma 3 270M mostly wrote texts of another kind (docs/BENCHMARKS.md). A label travels with its seed: the
device checks afterwards, with the user's own scorer, that each new text still fits it, and drops copies.

    items = augment(foundation, AugmentRequest(task="tweet paraphrase", seeds=[Seed("Loving the rain today")], n=3))
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pllm.cloud.foundation import Foundation
from pllm.lm.runtime import GenerationConfig
from pllm.openai_http import Usage

PREAMBLE = "Here are texts written by one person. {task_line}Each new text is on a related topic, in the same style \
and voice, and says something new.\n\n"
CONTEXT_SEEDS = 8  # other seeds shown before the one being extended


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


def augment(foundation: Foundation, request: AugmentRequest) -> AugmentResult:
    """`n` sampled new texts per seed; empty or verbatim copies of the seed are dropped here already."""
    result = AugmentResult()
    for index, seed in enumerate(request.seeds):
        prompt = seed_prompt(request.task, request.seeds, index, request.context)
        for k in range(request.n):
            usage = Usage()
            config = GenerationConfig(max_tokens=request.max_tokens, temperature=request.temperature,
                                      seed=request.seed * 1000 + index * 31 + k, stop=("\nText:", "\nLabel:", "\n\n"))
            text = clean("".join(foundation.complete_stream(prompt, config, usage)))
            result.requests += 1
            result.usage.prompt_tokens += usage.prompt_tokens
            result.usage.completion_tokens += usage.completion_tokens
            if text and text.lower() != " ".join(seed.text.split()).lower():
                result.items.append(SyntheticItem(index, text, seed.label))
    return result
