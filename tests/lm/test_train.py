"""The LoRA trainer on the real model: it learns, it resumes where a killed run stopped, and it checks its input."""

from __future__ import annotations

import pytest
import torch

from pllm.config import Settings
from pllm.lm.models import resolve_model
from pllm.lm.train import (
    Example,
    LoraSettings,
    MemoryStorage,
    Preference,
    TrainConfig,
    perplexity,
    sequence_logprobs,
    train_lora,
)

SYSTEM = {"role": "system", "content": "You are a helpful personal assistant."}
FACTS = [Example.of([SYSTEM, {"role": "user", "content": q}], "Your boat is called Seabird.")
         for q in ("What is my boat called?", "What's the name of my boat?")]
CONFIG = TrainConfig(steps=6, batch_size=2, lr=2e-3, checkpoint_every=2)


class Stop(Exception):
    pass


def test_training_lowers_the_loss_on_its_data() -> None:
    settings = Settings()
    result = train_lora(resolve_model(settings), settings.paths, FACTS, CONFIG)
    assert len(result.losses) == 6 and result.losses[-1] < result.losses[0]
    before = perplexity(result.model, result.tokenizer, FACTS, use_adapter=False)
    after = perplexity(result.model, result.tokenizer, FACTS)
    assert after < before / 2
    assert all(k.endswith(("lora_A.weight", "lora_B.weight")) for k in result.adapter)
    assert result.peak_rss_mb > 0 and result.tokens_per_second > 0


def test_a_killed_run_resumes_from_its_checkpoint() -> None:
    settings = Settings()
    model = resolve_model(settings)
    storage = MemoryStorage()

    def die_at_step_5(step: int, total: int, loss: float) -> None:
        if step == 5:
            raise Stop()

    with pytest.raises(Stop):
        train_lora(model, settings.paths, FACTS, CONFIG, storage=storage, on_step=die_at_step_5)
    assert storage.read("checkpoint") is not None
    resumed = train_lora(model, settings.paths, FACTS, CONFIG, storage=storage)
    assert resumed.resumed_from == 4 and len(resumed.losses) == 6
    assert storage.read("checkpoint") is None  # a finished run leaves no checkpoint
    straight = train_lora(model, settings.paths, FACTS, CONFIG)
    for key, weight in straight.adapter.items():
        torch.testing.assert_close(resumed.adapter[key], weight, atol=2e-3, rtol=0)
    assert straight.losses[:4] == pytest.approx(resumed.losses[:4])


def test_a_checkpoint_of_other_data_is_ignored() -> None:
    settings = Settings()
    storage = MemoryStorage()
    with pytest.raises(Stop):
        train_lora(resolve_model(settings), settings.paths, FACTS, CONFIG, storage=storage,
                   on_step=lambda step, *_: (_ for _ in ()).throw(Stop()) if step == 3 else None)
    other = [Example.of([SYSTEM, {"role": "user", "content": "Hi"}], "Hello!")]
    assert train_lora(resolve_model(settings), settings.paths, other, CONFIG, storage=storage).resumed_from == 0


def test_preference_pairs_train_with_dpo() -> None:
    """The DPO term, not the supervised data, widens the chosen-over-rejected margin."""
    settings = Settings()
    pair = Preference(FACTS[0].messages, "Your boat is called Seabird.", "I don't know your boat.")
    unrelated = [Example.of([SYSTEM, {"role": "user", "content": "Hi"}], "Hello! How can I help?")]
    chosen, rejected = Example(pair.messages, pair.chosen), Example(pair.messages, pair.rejected)
    config = TrainConfig(steps=6, batch_size=1, lr=2e-3, dpo_beta=0.5)

    def margin(pairs: list[Preference]) -> tuple[float, float]:
        result = train_lora(resolve_model(settings), settings.paths, unrelated, config, pairs=pairs)
        before = [lp for lp, _ in sequence_logprobs(result.model, result.tokenizer, [chosen, rejected],
                                                    use_adapter=False)]
        after = [lp for lp, _ in sequence_logprobs(result.model, result.tokenizer, [chosen, rejected])]
        return before[0] - before[1], after[0] - after[1]

    base, without_dpo = margin([])
    base_again, with_dpo = margin([pair])
    assert base == pytest.approx(base_again, abs=1e-3)  # the same frozen base
    assert with_dpo > base + 1.0 and with_dpo > without_dpo + 1.0


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError):
        LoraSettings(r=0)
    with pytest.raises(ValueError):
        TrainConfig(steps=0)
    settings = Settings()
    with pytest.raises(ValueError, match="no training examples"):
        train_lora(resolve_model(settings), settings.paths, [], CONFIG)
