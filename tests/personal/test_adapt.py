"""Adaptation data, policy and gate, from a real vault."""

from __future__ import annotations

from pathlib import Path

import pytest

from pllm.personal.adapt import AdaptationPolicy, TrainingSet, collect, fact_examples
from pllm.personal.profile import learn_facts
from pllm.personal.vault import Vault, create_vault


@pytest.fixture
def vault(pllm_home: Path) -> Vault:
    v = create_vault(pllm_home / "vault.db", "s3cret")
    yield v
    v.close()


def test_training_data_comes_from_texts_feedback_and_facts(vault: Vault) -> None:
    vault.add_document(source="n", kind="txt", content="Sailing to Skjervoy every Sunday with my sister.")
    learn_facts(vault, "My boat is called Seabird.", source="user")
    asked = vault.log_interaction(prompt="Best time to sail?", answer="Any time.", latency_s=1, tokens=3,
                                  personal=True, client="chat", sentiment=0)
    vault.add_feedback(asked, "edit", "Early morning, before the wind picks up.")
    liked = vault.log_interaction(prompt="Say hi", answer="Hi Mara!", latency_s=1, tokens=3, personal=True,
                                  client="chat", sentiment=0)
    vault.add_feedback(liked, "up")
    data = collect(vault)
    everything = data.examples + data.held_personal
    targets = [e.target for e in everything]
    assert "Sailing to Skjervoy every Sunday with my sister." in targets  # (a) the user's own text
    assert "Early morning, before the wind picks up." in targets  # (b) the edit is the target...
    assert "Any time." not in targets  # ...not the answer it replaced
    assert "Hi Mara!" in targets  # (b) an accepted answer
    assert data.pairs[0].chosen.startswith("Early") and data.pairs[0].rejected == "Any time."  # (c)
    assert targets.count("Your boat is called Seabird.") == 6  # two phrasings x3 to train...
    assert [(q.message_list()[-1]["content"], v) for q, v in data.held_facts] == [("What is my boat's name?",
                                                                                  "Seabird")]  # ...one held out
    assert data.counts["replay"] >= 16 and len(data.held_general) == 8  # (d)
    assert TrainingSet.from_bytes(data.to_bytes()) == data


def test_forgotten_items_are_never_trained_on(vault: Vault) -> None:
    vault.add_document(source="n", kind="txt", content="My locker code is 4471.")
    vault.add_document(source="n", kind="txt", content="I like tea.")
    vault.forget(query="locker")
    targets = [e.target for e in collect(vault).examples + collect(vault).held_personal]
    assert "I like tea." in targets and not any("4471" in t for t in targets)


def test_fact_questions() -> None:
    assert [e.target for e in fact_examples("cat name", "Pixel")] == ["Your cat is called Pixel."] * 3
    assert fact_examples("lives in", "Tromso")[0].message_list()[-1]["content"] == "Where do I live?"
    assert fact_examples("likes hiking", "hiking") == []


def test_policy(vault: Vault) -> None:
    policy = AdaptationPolicy()
    assert not policy.decide(vault, 0).train
    assert policy.decide(vault, 10).train  # never adapted, and there is data
    vault.set_meta("adapted_at", "9999999999")  # adapted "now": nothing new since
    decision = policy.decide(vault, 10)
    assert not decision.train and "not enough new signal" in decision.reason
    assert policy.decide(vault, 10, force=True).train
    assert policy.plan(4) == (16, 2.5e-3) and policy.plan(100) == (20, 2.5e-3) and policy.plan(400)[1] == 1e-3
