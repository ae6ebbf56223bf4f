"""The adaptation gate judges the exported GGUF on llama.cpp, on held-out data only: an adapter that generalises is
promoted, one that memorised without generalising is refused, and nothing held out means no promotion unless forced."""

from __future__ import annotations

import pytest

from pllm.config import Settings
from pllm.lm.export import BaseShape, gguf_lora_bytes
from pllm.lm.models import resolve_model
from pllm.lm.runtime import Runtime
from pllm.lm.train import TrainConfig, train_lora
from pllm.personal.adapt import fact_examples, replay_examples
from pllm.personal.gate import GateEvidence, decide, score_candidate


def evidence(**overrides: float) -> GateEvidence:
    fields = {"facts": 2, "facts_before": 0, "facts_after": 0, "texts": 1, "personal_before": 10.0,
              "personal_after": 10.0, "general_before": 2.0, "general_after": 2.0, **overrides}
    return GateEvidence(**fields)  # type: ignore[arg-type]


def test_the_decision_rules() -> None:
    assert decide(evidence(facts_after=1))[0]  # a held-out fact now answered
    assert decide(evidence(personal_after=8.0))[0]  # held-out texts more likely
    ok, why = decide(evidence())
    assert not ok and why.startswith("memorised without generalising")
    assert decide(evidence(), force=True)[0]
    ok, why = decide(evidence(facts_after=2, general_after=2.3))
    assert not ok and "general perplexity rose 15.0%" in why
    assert not decide(evidence(facts_before=1, facts_after=0, personal_after=5.0))[0]  # worse on a held-out fact
    nothing = evidence(facts=0, texts=0, personal_before=float("nan"), personal_after=float("nan"))
    ok, why = decide(nothing)
    assert not ok and "nothing held out" in why and "--force" in why
    assert decide(nothing, force=True)[0]


@pytest.fixture(scope="module")
def boat_adapter() -> bytes:
    """A real adapter taught one fact on two phrasings (and general chat, as `pllm adapt` mixes in)."""
    settings = Settings()
    model = resolve_model(settings)
    examples = fact_examples("boat name", "Seabird")[:2] * 3 + replay_examples()[:16]
    result = train_lora(model, settings.paths, examples, TrainConfig(steps=16, lr=2.5e-3))
    return gguf_lora_bytes(result.adapter, BaseShape.of_gguf(model.path), alpha=result.lora.alpha)


def test_an_adapter_that_generalises_is_promoted(runtime: Runtime, boat_adapter: bytes) -> None:
    held_out = fact_examples("boat name", "Seabird")[2]  # "What is my boat's name?": never trained on
    found = score_candidate(runtime, boat_adapter, facts=[(held_out, "Seabird")], texts=[],
                            general=replay_examples()[-8:])
    assert (found.facts_before, found.facts_after) == (0, 1)
    ok, why = decide(found)
    assert ok and why.startswith("generalises"), why


def test_an_adapter_that_only_memorised_is_refused(runtime: Runtime, boat_adapter: bytes) -> None:
    never_taught = fact_examples("cat name", "Pixel")[2]  # a fact it was never taught in any form
    found = score_candidate(runtime, boat_adapter, facts=[(never_taught, "Pixel")], texts=[],
                            general=replay_examples()[-8:])
    assert found.facts_after == 0
    ok, why = decide(found)
    assert not ok and why.startswith("memorised without generalising"), why
    assert runtime.active_adapters == {} and "candidate" not in runtime.adapters  # the runtime is left clean
