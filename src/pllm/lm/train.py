"""The LoRA trainer every tier reuses (the user's adapter, task and expert adapters, federated clients).

transformers + peft on the fp32 copy dequantised once from the GGUF (lm/hf.py); bf16 autocast; per-batch padding;
loss on target tokens only; an optional DPO term for preference pairs (chosen over rejected, the frozen base as
the reference); fixed seeds; checkpoints every few steps so a killed run resumes where it stopped.

The trainer writes nothing itself: checkpoints go through a `Storage` the caller provides, so the personal tier
can keep them encrypted.

    result = train_lora(model_file, paths, examples, TrainConfig(steps=40), storage=my_storage)
    result.adapter  # {name: tensor} in PEFT's naming, ready for lm.export
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from pllm.config import Paths
from pllm.lm.models import ModelFile

Message = dict[str, str]


@dataclass(frozen=True)
class LoraSettings:
    """The adapter's shape."""

    r: int = 8  # rank
    alpha: int = 16  # scale = alpha / r
    dropout: float = 0.0  # dropout on the LoRA input
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")  # which linear layers get LoRA

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha <= 0:
            raise ValueError("LoRA rank must be >= 1 and alpha > 0")
        if not self.target_modules:
            raise ValueError("LoRA needs at least one target module")


@dataclass(frozen=True)
class TrainConfig:
    """How to train one adapter."""

    lora: LoraSettings = field(default_factory=LoraSettings)
    steps: int = 40  # optimizer steps
    batch_size: int = 8  # examples per step
    lr: float = 5e-4  # peak learning rate (linear warm-up, cosine decay)
    warmup: int = 3  # warm-up steps
    max_len: int = 256  # tokens per example, prompt and target together
    seed: int = 0  # data order, dropout, LoRA init
    bf16: bool = True  # bf16 autocast for the forward and backward pass
    dpo_beta: float = 0.1  # strength of the preference term
    checkpoint_every: int = 5  # steps between checkpoints
    threads: int = 2  # torch CPU threads
    pad_to: int | None = None  # pad every batch to this length (the naive loop the bench compares against)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or self.max_len < 8:
            raise ValueError("steps, batch_size and max_len must be positive and lr > 0")


@dataclass(frozen=True)
class Example:
    """A supervised example: the conversation so far, and the assistant reply to learn."""

    messages: tuple[tuple[str, str], ...]  # (role, content) pairs, ending with the user turn
    target: str

    @classmethod
    def of(cls, messages: Sequence[Message], target: str) -> Example:
        return cls(tuple((m["role"], m["content"]) for m in messages), target)

    def message_list(self) -> list[Message]:
        return [{"role": r, "content": c} for r, c in self.messages]


@dataclass(frozen=True)
class Preference:
    """A preference pair: for this conversation, `chosen` is better than `rejected`."""

    messages: tuple[tuple[str, str], ...]
    chosen: str
    rejected: str


class Storage(Protocol):
    """Where checkpoints go (the personal tier encrypts them)."""

    def read(self, name: str) -> bytes | None: ...

    def write(self, name: str, data: bytes) -> None: ...

    def delete(self, name: str) -> None: ...


class MemoryStorage:
    """Checkpoints kept in memory only (evaluation runs, tests)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def read(self, name: str) -> bytes | None:
        return self.files.get(name)

    def write(self, name: str, data: bytes) -> None:
        self.files[name] = data

    def delete(self, name: str) -> None:
        self.files.pop(name, None)


@dataclass
class TrainResult:
    adapter: dict[str, Any]  # PEFT state dict of the LoRA weights (CPU tensors)
    lora: LoraSettings
    steps: int
    resumed_from: int
    seconds: float
    train_tokens: int  # target and prompt tokens processed
    losses: list[float]
    peak_rss_mb: float
    model: Any = None  # the trained PEFT model and its tokenizer, for evaluation before it is dropped
    tokenizer: Any = None

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_per_step(self) -> float:
        done = self.steps - self.resumed_from
        return self.seconds / done if done else 0.0


OnStep = Callable[[int, int, float], None]  # (step, total, loss)


def data_fingerprint(examples: Sequence[Example], pairs: Sequence[Preference], config: TrainConfig) -> str:
    blob = json.dumps([[asdict(e) for e in examples], [asdict(p) for p in pairs], asdict(config)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def encode(tokenizer: Any, messages: list[Message], target: str, max_len: int) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 on the prompt) for one example, in the model's own chat template."""
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    end = tokenizer.eos_token or ""
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    target_ids = tokenizer(target + end, add_special_tokens=False).input_ids
    prompt_ids = prompt_ids[-max(1, max_len - len(target_ids)):]  # keep the end of a long prompt
    ids = (prompt_ids + target_ids)[:max_len]
    labels = ([-100] * len(prompt_ids) + target_ids)[:max_len]
    return ids, labels


def _batch(rows: Sequence[tuple[list[int], list[int]]], pad_id: int, pad_to: int | None = None) -> dict[str, Any]:
    import torch

    width = pad_to or max(len(ids) for ids, _ in rows)  # per-batch padding: no wasted columns
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for n, (i, lab) in enumerate(rows):
        ids[n, : len(i)] = torch.tensor(i)
        labels[n, : len(lab)] = torch.tensor(lab)
        mask[n, : len(i)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def sequence_logprob(model: Any, batch: dict[str, Any]) -> Any:
    """Sum of target-token log-probabilities per row."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    picked = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def load_for_training(model_file: ModelFile, paths: Paths, lora: LoraSettings, seed: int,
                      base_adapter: dict[str, Any] | None = None, bf16: bool = False) -> tuple[Any, Any]:
    """The fp32 base (with `base_adapter` merged in, frozen) wrapped with a fresh trainable LoRA."""
    import torch
    from peft import get_peft_model, set_peft_model_state_dict

    from pllm.lm.hf import load_causal_lm

    torch.manual_seed(seed)
    model, tokenizer = load_causal_lm(model_file, paths)
    if base_adapter is not None:  # a task adapter under the user's: merge it into the frozen weights
        frozen = get_peft_model(model, _peft_config(base_adapter_settings(base_adapter)))
        set_peft_model_state_dict(frozen, base_adapter["weights"])
        model = frozen.merge_and_unload()
    if bf16:
        # The frozen base in bf16: autocast would cast it on every op anyway; this halves its memory and saves the
        # casts. PEFT keeps the trainable LoRA weights in fp32 (autocast_adapter_dtype).
        model = model.to(torch.bfloat16)
    peft_model = get_peft_model(model, _peft_config(lora))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return peft_model, tokenizer


def _peft_config(lora: LoraSettings) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(lora.target_modules), bias="none")


def base_adapter_settings(adapter: dict[str, Any]) -> LoraSettings:
    return LoraSettings(**{**adapter["lora"], "target_modules": tuple(adapter["lora"]["target_modules"])})


def _lr_at(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_lora(model_file: ModelFile, paths: Paths, examples: Sequence[Example], config: TrainConfig, *,
               pairs: Sequence[Preference] = (), storage: Storage | None = None, on_step: OnStep | None = None,
               base_adapter: dict[str, Any] | None = None, init_adapter: dict[str, Any] | None = None) -> TrainResult:
    """Train a LoRA adapter; resumes from the checkpoint in `storage` when it belongs to the same data.

    `base_adapter` ({"weights", "lora"}) is merged into the frozen base first (a task adapter under the user's);
    `init_adapter` starts the new adapter from earlier weights (continual updates).
    """
    import torch
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    if not examples:
        raise ValueError("no training examples")
    torch.set_num_threads(config.threads)
    storage = storage or MemoryStorage()
    fingerprint = data_fingerprint(examples, pairs, config)
    model, tokenizer = load_for_training(model_file, paths, config.lora, config.seed, base_adapter, config.bf16)
    if init_adapter is not None:
        set_peft_model_state_dict(model, init_adapter["weights"])
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    rows = [encode(tokenizer, e.message_list(), e.target, config.max_len) for e in examples]
    pref_rows = [(encode(tokenizer, [{"role": r, "content": c} for r, c in p.messages], p.chosen, config.max_len),
                  encode(tokenizer, [{"role": r, "content": c} for r, c in p.messages], p.rejected, config.max_len))
                 for p in pairs]
    start, losses, tokens = 0, [], 0
    saved = storage.read("checkpoint")
    if saved is not None:
        state = torch.load(io.BytesIO(saved), weights_only=False)
        if state.get("fingerprint") == fingerprint:
            set_peft_model_state_dict(model, state["adapter"])
            optimizer.load_state_dict(state["optimizer"])
            start, losses, tokens = state["step"], state["losses"], state["tokens"]
    order_rng = random.Random(config.seed)
    order: list[int] = []
    for _ in range(config.steps * config.batch_size // max(1, len(rows)) + 2):
        block = list(range(len(rows)))
        order_rng.shuffle(block)
        order += block
    pad = tokenizer.pad_token_id
    started = time.perf_counter()
    for step in range(start, config.steps):
        picked = [rows[i] for i in order[step * config.batch_size:(step + 1) * config.batch_size]]
        batch = _batch(picked, pad, config.pad_to)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            loss = model(**batch).loss
            if pref_rows:
                loss = loss + _dpo_loss(model, pref_rows, step, config, pad)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        tokens += int(batch["attention_mask"].sum())
        if on_step:
            on_step(step + 1, config.steps, losses[-1])
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            buffer = io.BytesIO()
            torch.save({"fingerprint": fingerprint, "step": step + 1, "adapter": get_peft_model_state_dict(model),
                        "optimizer": optimizer.state_dict(), "losses": losses, "tokens": tokens}, buffer)
            storage.write("checkpoint", buffer.getvalue())
    seconds = time.perf_counter() - started
    adapter = {k: v.detach().to(torch.float32).clone() for k, v in get_peft_model_state_dict(model).items()}
    storage.delete("checkpoint")
    return TrainResult(adapter, config.lora, config.steps, start, seconds, tokens, losses, peak_rss_mb(),
                       model, tokenizer)


def _dpo_loss(model: Any, pref_rows: list[Any], step: int, config: TrainConfig, pad: int) -> Any:
    """DPO on one preference pair per step, the model without its adapter as the reference."""
    import torch
    import torch.nn.functional as F

    chosen, rejected = pref_rows[step % len(pref_rows)]
    batch = _batch([chosen, rejected], pad)
    policy = sequence_logprob(model, batch)
    with torch.no_grad(), model.disable_adapter():
        reference = sequence_logprob(model, batch)
    margin = (policy[0] - reference[0]) - (policy[1] - reference[1])
    return -F.logsigmoid(config.dpo_beta * margin)


def perplexity(model: Any, tokenizer: Any, examples: Sequence[Example], *, use_adapter: bool = True,
               max_len: int = 256) -> float:
    """Perplexity of the targets of `examples` under a loaded PEFT model, with or without its adapter."""
    import contextlib

    import torch

    if not examples:
        return float("nan")
    model.eval()
    nll, count = 0.0, 0
    switch = contextlib.nullcontext() if use_adapter else model.disable_adapter()
    with torch.no_grad(), switch:
        for e in examples:
            ids, labels = encode(tokenizer, e.message_list(), e.target, max_len)
            nll -= float(sequence_logprob(model, _batch([(ids, labels)], tokenizer.pad_token_id))[0])
            count += sum(1 for x in labels[1:] if x != -100)
    return math.exp(nll / max(1, count))
