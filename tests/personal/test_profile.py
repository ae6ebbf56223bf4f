"""The user profiling layer: facts, sentiment, topics with decay, style, feedback and mood."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pllm.lm.runtime import Runtime
from pllm.personal.profile import build_profile, extract_facts, extract_facts_with_model, learn_facts, sentiment
from pllm.personal.vault import Vault, create_vault


@pytest.fixture
def vault(pllm_home: Path) -> Vault:
    v = create_vault(pllm_home / "vault.db", "s3cret", name="Mara")
    yield v
    v.close()


@pytest.mark.parametrize("text, facts", [
    ("My cat is called Pixel and I live in Tromso", [("cat name", "Pixel"), ("lives in", "Tromso")]),
    ("my dog is named Rex.", [("dog name", "Rex")]),
    ("I'm allergic to peanuts, sadly.", [("allergic to", "peanuts")]),
    ("My favourite band is Radiohead.", [("favourite band", "Radiohead")]),
    ("The weather is nice today.", []),
    ("My favorite color is green.", [("favourite colour", "green")]),  # one spelling per key
    ("I like how it's both a creative outlet: how it's both a creative outlet", []),  # a clause, not a thing
    ("I like painting. I really like painting.", [("likes painting", "painting")]),  # stated twice, one fact
])
def test_pattern_facts(text: str, facts: list[tuple[str, str]]) -> None:
    assert extract_facts(text) == facts


@pytest.mark.parametrize("text, sign", [
    ("I love this, it is great!", 1), ("I am so tired and sad today", -1), ("I am not happy", -1), ("It is Tuesday", 0),
])
def test_sentiment(text: str, sign: int) -> None:
    score = sentiment(text)
    assert -1 <= score <= 1
    assert (score > 0) - (score < 0) == sign


def test_the_model_finds_a_stated_fact(runtime: Runtime) -> None:
    facts = extract_facts_with_model(runtime, "Yesterday my sister Ingrid visited me in Bergen.")
    assert ("sister name", "Ingrid") in facts
    assert len(facts) == len(set(facts))  # each fact once, however often the model repeats it


class QueuedModel:
    """A fake model whose reply is queued (unit test of the filter; the real model is tested above)."""

    def __init__(self, reply: str) -> None:
        self.reply = reply

    def complete(self, prompt: str, config: object) -> object:
        return type("Completion", (), {"text": self.reply})()


def test_model_facts_not_in_the_text_are_dropped() -> None:
    reply = "sister name: Ingrid\ncity: Paris\nsister name: Ingrid\nnot a fact line\nage: 42"
    facts = extract_facts_with_model(QueuedModel(reply), "Yesterday my sister Ingrid visited me in Bergen.")  # type: ignore[arg-type]
    assert facts == [("sister name", "Ingrid")]  # Paris and 42 were invented; the repeat is dropped


def test_profile_from_texts_interactions_and_feedback(vault: Vault) -> None:
    now = time.time()
    vault.add_documents([
        ("a", "txt", "Went hiking in the mountains again, hiking is my thing.", now - 86400),
        ("b", "txt", "Old note about chess openings.", now - 400 * 86400),
    ])
    learn_facts(vault, "My cat is called Pixel and I live in Tromso", source="document:c")
    i = vault.log_interaction(prompt="I love hiking! Any trails near Tromso? 😀", answer="A long answer " * 20,
                              latency_s=1, tokens=50, personal=True, client="chat", sentiment=0.8)
    vault.add_feedback(i, "up")
    vault.add_feedback(i, "edit", "Try the Fjellheisen trail.")
    profile = build_profile(vault, now=now)
    assert profile.name == "Mara"
    assert {(f.key, f.value) for f in profile.facts} == {("cat name", "Pixel"), ("lives in", "Tromso")}
    topics = [t for t, _ in profile.topics]
    assert topics[0] == "hiking"
    weights = dict(profile.topics)
    assert weights.get("chess", 0) < 0.01 < weights["hiking"]  # a year-old topic has decayed away
    assert profile.style.preferred_answer_words == 4
    assert profile.feedback["up"] == 1 and profile.feedback["edit"] == 1 and profile.feedback["approval"] == 1.0
    assert profile.mood["recent"] == 0.8
    summary = profile.summary()
    assert "Mara" in summary and "cat name: Pixel" in summary and "hiking" in summary
    assert "prefers answers of about 4 words" in summary
    assert profile.as_dict()["summary"] == summary


def test_the_prompt_summary_holds_for_the_hour_but_facts_change_it_at_once(vault: Vault) -> None:
    from pllm.personal.profile import PROMPT_PROFILE_REFRESH_S, prompt_summary

    hour = (time.time() // PROMPT_PROFILE_REFRESH_S) * PROMPT_PROFILE_REFRESH_S
    for n in range(4):
        vault.log_interaction(prompt="How do I tune my violin strings?", answer="...", latency_s=1.0, tokens=5,
                              personal=True, client="cli", sentiment=0.0, created_at=hour - 7200 + n)
    before = prompt_summary(vault, now=hour + 60)
    assert "violin" in before
    for n in range(6):  # a burst of messages on something else within the hour: the system turn stays the same
        vault.log_interaction(prompt="Which glaze suits stoneware pottery?", answer="...", latency_s=1.0, tokens=5,
                              personal=True, client="cli", sentiment=0.0, created_at=hour + 120 + n)
    assert prompt_summary(vault, now=hour + 600) == before
    assert "pottery" in prompt_summary(vault, now=hour + PROMPT_PROFILE_REFRESH_S + 1)  # the next hour has it
    learn_facts(vault, "My cat is called Pixel.", source="test")
    assert "Pixel" in prompt_summary(vault, now=hour + 600)  # what the user states counts at once
