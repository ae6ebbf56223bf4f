"""The trainer's fast path computes what the plain transformers forward computes: same log-probabilities, same loss,
same gradients; only the work differs (frozen layers once per distinct example, logits at targets only)."""

from __future__ import annotations

import pytest
import torch

from pllm.config import Settings
from pllm.lm.forward import LayerSplit, micro_batches
from pllm.lm.models import resolve_model
from pllm.lm.train import ATTENTION, Example, LoraSettings, TrainConfig, _batch, _Steps, encode, load_for_training

SYSTEM = {"role": "system", "content": "You are a helpful personal assistant."}
EXAMPLES = [Example.of([SYSTEM, {"role": "user", "content": "What is my boat called?"}], "Your boat is Seabird."),
            Example.of([SYSTEM, {"role": "user", "content": "Tell me a long story about a sailor who crossed the "
                                 "northern sea in the dark of winter."}], "Once there was a sailor named Ole."),
            Example.of([SYSTEM, {"role": "user", "content": "Hi"}], "Hello!")]


@pytest.fixture(scope="module")
def loaded() -> tuple:
    settings = Settings()
    model, tokenizer = load_for_training(resolve_model(settings), settings.paths, LoraSettings(layers=None), seed=0)
    for name, weight in model.named_parameters():  # a LoRA that changes the output, not PEFT's zero-init B
        if "lora_B" in name:
            torch.nn.init.normal_(weight, 0, 0.02)
    rows = [encode(tokenizer, e.message_list(), e.target, 256) for e in EXAMPLES]
    return model, tokenizer, rows


def reference_logprobs(model: object, rows: list, pad: int) -> list[float]:
    batch = _batch(rows, pad)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    out = []
    for n, (_, labels) in enumerate(rows):
        targets = torch.tensor(labels[1:])
        keep = targets != -100
        logprobs = torch.log_softmax(logits[n, : len(labels) - 1], -1)
        out.append(float(logprobs[torch.arange(len(targets))[keep], targets[keep]].sum()))
    return out


@pytest.mark.parametrize("first_trained", [0, 20, 30])
def test_split_forward_matches_the_full_model(loaded: tuple, first_trained: int) -> None:
    model, tokenizer, rows = loaded
    with torch.no_grad():
        expected = reference_logprobs(model, rows, tokenizer.pad_token_id)
        split = LayerSplit(model, first_trained)
        got = split.target_logprobs(split.lower([ids for ids, _ in rows]), [labels for _, labels in rows])
    assert got.tolist() == pytest.approx(expected, abs=2e-3)
    assert min(expected) < -5  # real log-probabilities, not an empty sum


def test_fast_steps_give_the_naive_loss_and_gradients(loaded: tuple) -> None:
    model, tokenizer, rows = loaded
    config = TrainConfig(lora=LoraSettings(layers=None, target_modules=ATTENTION), steps=1, batch_size=3,
                         micro_batch_tokens=64)  # forces the batch into micro-batches: same gradient expected
    grads = []
    for target_only in (False, True):
        model.zero_grad(set_to_none=True)
        steps = _Steps(model, tokenizer, TrainConfig(**{**config.__dict__, "target_only": target_only}), rows, [],
                       used={0, 1, 2})
        loss, tokens, flops = steps([0, 1, 2], 0)
        grads.append((loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
        assert tokens == sum(len(ids) for ids, _ in rows) and flops > 0
    (naive_loss, naive_grads), (fast_loss, fast_grads) = grads
    assert fast_loss == pytest.approx(naive_loss, rel=1e-4)
    assert naive_grads.keys() == fast_grads.keys() and naive_grads
    for name, grad in naive_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, atol=1e-5, rtol=1e-3)
    model.zero_grad(set_to_none=True)


def test_repeated_rows_run_the_frozen_layers_once(loaded: tuple) -> None:
    model, _, rows = loaded
    split = LayerSplit(model, 25)
    states = split.lower([rows[0][0], rows[1][0], rows[0][0]])
    assert states[0] is states[2] and states[0] is not states[1]
    assert states[1].shape == (len(rows[1][0]), 576)


def test_micro_batches_respect_the_token_budget() -> None:
    lengths = [10, 250, 40, 240, 60, 5]
    groups = list(micro_batches(lengths, 300))
    assert sorted(i for g in groups for i in g) == list(range(6))
    assert all(len(g) * max(lengths[i] for i in g) <= 300 or len(g) == 1 for g in groups)
    assert list(micro_batches([500], 100)) == [[0]]  # a row over the budget still runs, alone


def test_models_that_cannot_be_split_are_refused() -> None:
    from pllm.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="llama-family"):
        LayerSplit(torch.nn.Linear(2, 2), 0)
