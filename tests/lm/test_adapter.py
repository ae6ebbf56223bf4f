"""The one adapter pipeline: a config from the settings and the named learning-rate policy, a trained adapter that
llama.cpp serves, and an examination adapter off against on."""

from __future__ import annotations

import pytest

from pllm.config import Settings
from pllm.lm.adapter import Purpose, examine, learning_rate, train_adapter, train_config
from pllm.lm.runtime import Runtime
from pllm.lm.train import Example

SYSTEM = {"role": "system", "content": "You are a helpful personal assistant."}
FACT = [Example.of([SYSTEM, {"role": "user", "content": q}], "Your boat is called Seabird.")
        for q in ("What is my boat called?", "What's the name of my boat?")]


def test_each_purpose_has_its_learning_rate() -> None:
    assert learning_rate(Purpose.PERSONAL, 100) > learning_rate(Purpose.PERSONAL, 1000)
    assert learning_rate(Purpose.EXPERT) < learning_rate(Purpose.TASK)
    assert {learning_rate(p) for p in Purpose} <= {2.5e-3, 2e-3, 1e-3, 5e-4}


def test_the_config_comes_from_the_settings_and_the_purpose() -> None:
    settings = Settings(threads=1, train_dtype="fp32")
    config = train_config(settings, Purpose.EXPERT, steps=7)
    assert (config.threads, config.dtype, config.steps, config.lr) == (1, "fp32", 7, learning_rate(Purpose.EXPERT))
    assert train_config(settings, Purpose.TASK, lr=1e-4).lr == 1e-4  # an explicit rate wins
    with pytest.raises(TypeError):
        train_config(settings, Purpose.TASK, learning_rat=1e-4)  # a misspelt field is refused, not ignored


def test_a_trained_adapter_serves_on_llama_cpp_and_frees_its_torch_model(runtime: Runtime) -> None:
    settings = Settings(train_dtype="fp32")
    trained = train_adapter(settings, FACT, train_config(settings, Purpose.TASK, steps=6, batch_size=2))
    assert trained.result.model is None and trained.result.tokenizer is None
    assert trained.result.losses[-1] < trained.result.losses[0]
    assert trained.gguf[:4] == b"GGUF" and trained.mb > 0.1
    assert set(trained.stacked()) == {"weights", "lora"} and trained.safetensors()

    def answer_logprob(rt: Runtime) -> float:
        return rt.answer_logprob(FACT[0].message_list(), FACT[0].target)[0]

    before, after = examine(runtime, trained.gguf, answer_logprob)
    assert after > before + 1.0  # the adapter raised the trained answer's likelihood where it serves
    assert runtime.active_adapters == {} and "candidate" not in runtime.adapters  # back on the base model
