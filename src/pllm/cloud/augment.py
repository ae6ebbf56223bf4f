"""The cloud half of CDCDA: from a user's few (already redacted) seed items, the T-model writes new ones.

Each seed is shown with its task and label, and the model writes `n` new texts in the same person's voice on a
related topic, one sampled continuation each (different seeds per sample, so they differ). A label travels with
its seed: the device checks afterwards, with the user's own scorer, that each new text still fits it.

    items = augment(foundation, AugmentRequest(task="tweet paraphrase", seeds=[Seed("Loving the rain today")], n=3))
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pllm.cloud.foundation import Foundation
from pllm.lm.runtime import GenerationConfig
from pllm.openai_http import Usage

PROMPT = """Here are texts written by one person. {task_line}Each new text is on a related topic, in the same style \
and voice, and says something new.

Text: {example}
{label_line}
Text:"""


@dataclass(frozen=True)
class Seed:
    text: str
    label: str | None = None


@dataclass(frozen=True)
class AugmentRequest:
    task: str
    seeds: list[Seed]
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


def seed_prompt(task: str, seed: Seed) -> str:
    task_line = f"They are {task}. " if task else ""
    label_line = f"Label: {seed.label}\n" if seed.label is not None else ""
    return PROMPT.format(task_line=task_line, example=" ".join(seed.text.split()), label_line=label_line)


def clean(text: str) -> str:
    """The new text alone: the model's first paragraph, without a "Label:" line it may add."""
    text = text.strip().split("\n\n")[0]
    lines = [line for line in text.splitlines() if not line.lower().startswith(("label:", "text:"))]
    return " ".join(" ".join(lines).split())


def augment(foundation: Foundation, request: AugmentRequest) -> AugmentResult:
    """`n` sampled new texts per seed; empty or verbatim copies of the seed are dropped here already."""
    result = AugmentResult()
    for index, seed in enumerate(request.seeds):
        prompt = seed_prompt(request.task, seed)
        for k in range(request.n):
            usage = Usage()
            config = GenerationConfig(max_tokens=request.max_tokens, temperature=request.temperature,
                                      seed=request.seed * 1000 + index * 31 + k, stop=("\nText:", "\n\n"))
            text = clean("".join(foundation.complete_stream(prompt, config, usage)))
            result.requests += 1
            result.usage.prompt_tokens += usage.prompt_tokens
            result.usage.completion_tokens += usage.completion_tokens
            if text and text.lower() != " ".join(seed.text.split()).lower():
                result.items.append(SyntheticItem(index, text, seed.label))
    return result
