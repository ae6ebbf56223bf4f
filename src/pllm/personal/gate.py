"""The adaptation gate: a new adapter version is promoted only if it generalises, judged where it will serve.

The candidate is the exported GGUF on llama.cpp over the Q4_1 base, adapter on against adapter off, scored on what
its training never saw in any form:
  - held-out fact phrasings: each fact trains on two phrasings; the third is asked, and counts when the greedy
    answer names the fact's value (the target string is not compared: it is the same for every phrasing);
  - held-out texts: about one in seven of the user's texts and feedback items, never trained on, and none that
    states a fact the adapter trains on; per-token log-likelihood under the same prompt as in training;
  - general chat held out from the replay set: its perplexity may rise by at most 10%.
Promoted when at least one personal signal improves, none gets worse, and general chat stays within tolerance.
With nothing held out there is no evidence: not promoted unless forced, and the reason says which case applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pllm.lm.adapter import examine
from pllm.lm.runtime import GenerationConfig, Runtime
from pllm.lm.train import Example
from pllm.stats import perplexity_of

GENERAL_TOLERANCE = 0.10  # general perplexity may rise at most this much for a promote
TEXT_TOLERANCE = 0.01  # held-out text perplexity counts as worse only beyond noise


@dataclass
class GateEvidence:
    facts: int  # held-out fact phrasings asked
    facts_before: int  # answered with the value by the base model
    facts_after: int  # ... with the candidate adapter
    texts: int  # held-out texts scored
    personal_before: float  # perplexity of the held-out texts (nan when there are none)
    personal_after: float
    general_before: float  # perplexity of held-out general chat
    general_after: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _perplexity(runtime: Runtime, examples: Sequence[Example]) -> float:
    if not examples:
        return float("nan")
    return perplexity_of([runtime.answer_logprob(e.message_list(), e.target) for e in examples])


def facts_answered(runtime: Runtime, facts: Sequence[tuple[Example, str]], *, max_tokens: int = 32) -> int:
    """Held-out fact questions whose greedy answer names the value, with the runtime's adapters as they are set."""
    hits = 0
    for question, value in facts:
        answer = runtime.complete(runtime.chat_prompt(question.message_list()), GenerationConfig(max_tokens=max_tokens))
        hits += value.lower() in answer.text.lower()
    return hits


def score_candidate(runtime: Runtime, gguf: bytes, *, facts: Sequence[tuple[Example, str]],
                    texts: Sequence[Example], general: Sequence[Example]) -> GateEvidence:
    """Everything the gate decides on, adapter off then on, on llama.cpp."""
    def measure(rt: Runtime) -> tuple[int, float, float]:
        return facts_answered(rt, facts), _perplexity(rt, texts), _perplexity(rt, general)

    before, after = examine(runtime, gguf, measure)
    return GateEvidence(facts=len(facts), texts=len(texts), facts_before=before[0], facts_after=after[0],
                        personal_before=before[1], personal_after=after[1], general_before=before[2],
                        general_after=after[2])


def evidence_text(e: GateEvidence) -> str:
    """The figures in one line: facts answered, held-out text and general perplexity, before -> after."""
    texts = (f"held-out texts ({e.texts}) perplexity {e.personal_before:.3f} -> {e.personal_after:.3f}" if e.texts
             else "no held-out texts")
    return (f"held-out facts answered {e.facts_before}/{e.facts} -> {e.facts_after}/{e.facts}, {texts}, "
            f"general perplexity {e.general_before:.3f} -> {e.general_after:.3f}")


def decide(e: GateEvidence, *, force: bool = False) -> tuple[bool, str]:
    """(promote?, why): the reason names the case that applied and the figures it rests on."""
    general = e.general_after / e.general_before - 1 if e.general_before else 0.0
    figures = evidence_text(e)
    if general > GENERAL_TOLERANCE:
        return False, f"general perplexity rose {general:.1%} (limit {GENERAL_TOLERANCE:.0%}); {figures}"
    if e.facts == 0 and e.texts == 0:
        if force:
            return True, f"nothing held out to judge on: promoted because forced; {figures}"
        return False, "nothing held out to judge on (too little data): not promoted; `pllm adapt --force` promotes"
    texts_better = e.texts > 0 and e.personal_after < e.personal_before
    texts_worse = e.texts > 0 and e.personal_after > e.personal_before * (1 + TEXT_TOLERANCE)
    if e.facts_after < e.facts_before or texts_worse:
        return False, f"worse on held-out personal data: {figures}"
    if e.facts_after > e.facts_before or texts_better:
        return True, f"generalises to held-out data: {figures}"
    if force:
        return True, f"no held-out gain, promoted because forced: {figures}"
    return False, f"memorised without generalising (no held-out gain): {figures}"
