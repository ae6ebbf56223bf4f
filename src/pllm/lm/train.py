"""The LoRA trainer every tier reuses (the user's adapter, task and expert adapters, federated clients).

transformers + peft on the fp32 copy dequantised once from the GGUF (lm/hf.py), in the precision the CPU does fast
(lm/hardware.py: bf16 only where it is native, else fp32). What makes it fast on two cores (lm/forward.py): LoRA on
the upper layers only, the frozen layers below run once per example and reused across epochs; the output layer only
at target positions; per-batch padding; micro-batches by token budget, so memory stays bounded on long items.
Loss on target tokens only; an optional DPO term for preference pairs (chosen over rejected, the frozen base as the
reference); fixed seeds; checkpoints every few steps so a killed run resumes where it stopped.

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
from pllm.lm.forward import LayerSplit, Row, count_targets, layer_weights, micro_batches
from pllm.lm.hf import load_causal_lm
from pllm.lm.models import ModelFile

Message = dict[str, str]
# LoRA on the top layers only: the frozen ones below run once per example, not once per step (lm/forward.py).
# Measured by `pllm bench` against LoRA on every layer: what the update teaches, and how fast.
# LoRA on attention alone in the top layers learned facts worse (2 of 8 held-out questions against 6 of 8 with the
# MLP too): measured with `pllm bench`, docs/BENCHMARKS.md.
TOP_LAYERS = 10
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """The adapter's shape."""

    r: int = 8  # rank
    alpha: int = 16  # scale = alpha / r
    dropout: float = 0.0  # dropout on the LoRA input
    target_modules: tuple[str, ...] = ATTENTION + MLP  # which linear layers get LoRA
    layers: int | None = TOP_LAYERS  # LoRA on the top N decoder layers only (None: every layer)

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha <= 0:
            raise ValueError("LoRA rank must be >= 1 and alpha > 0")
        if not self.target_modules:
            raise ValueError("LoRA needs at least one target module")
        if self.layers is not None and self.layers < 1:
            raise ValueError("LoRA layers must be >= 1 (or None for every layer)")


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
    dtype: str = "fp32"  # fp32, or bf16 (autocast over a bf16 frozen base): pick with lm.hardware.choose_train_dtype
    dpo_beta: float = 0.1  # strength of the preference term
    checkpoint_every: int = 5  # steps between checkpoints
    threads: int = 2  # torch CPU threads
    micro_batch_tokens: int = 512  # padded tokens per forward pass at most; a batch over it runs in parts
    target_only: bool = True  # frozen-layer cache and output layer at targets only (False: the naive full forward)
    pad_to: int | None = None  # pad every batch to this length (the naive loop the bench compares against)
    train_a: bool = True  # False: LoRA's A stays as initialised and only B trains (FFA-LoRA, federated experts)
    target_end: bool = True  # the target ends with the end-of-turn token (False: the loss is on the answer alone)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or self.max_len < 8:
            raise ValueError("steps, batch_size and max_len must be positive and lr > 0")
        if self.dtype not in ("fp32", "bf16"):
            raise ValueError(f"train dtype must be fp32 or bf16, not {self.dtype!r}")
        if self.micro_batch_tokens < 1:
            raise ValueError("micro_batch_tokens must be positive (a longer row still runs, alone)")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """From `asdict` output, e.g. a resumed run's snapshot; keys of older versions are dropped."""
        known = {f for f in cls.__dataclass_fields__}
        lora = raw.get("lora", {})
        lora = LoraSettings(**{k: v for k, v in lora.items() if k in LoraSettings.__dataclass_fields__
                               and k != "target_modules"}, target_modules=tuple(lora.get("target_modules", ())))
        return cls(**{**{k: v for k, v in raw.items() if k in known}, "lora": lora})


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
    seconds: float  # the whole run: the frozen layers' pass over the data, then the steps
    train_tokens: int  # target and prompt tokens processed
    losses: list[float]
    peak_rss_mb: float
    dtype: str = "fp32"
    prepare_seconds: float = 0.0  # the frozen lower layers, once per example, before the first step
    flops: float = 0.0  # matmul FLOPs executed by the steps timed in `seconds` (an estimate from layer shapes)
    model: Any = None  # the trained PEFT model and its tokenizer, for evaluation before it is dropped
    tokenizer: Any = None

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_per_step(self) -> float:
        """Seconds of one optimizer step, the one-off pass of the frozen layers left out."""
        done = self.steps - self.resumed_from
        return (self.seconds - self.prepare_seconds) / done if done else 0.0


OnStep = Callable[[int, int, float], None]  # (step, total, loss)
OnPhase = Callable[[str], None]  # what the run does now, before its steps


def data_fingerprint(examples: Sequence[Example], pairs: Sequence[Preference], config: TrainConfig) -> str:
    blob = json.dumps([[asdict(e) for e in examples], [asdict(p) for p in pairs], asdict(config)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def encode(tokenizer: Any, messages: list[Message], target: str, max_len: int, *,
           target_end: bool = True) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 on the prompt) for one example, in the model's own chat template."""
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    end = (tokenizer.eos_token or "") if target_end else ""
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


def load_for_training(model_file: ModelFile, paths: Paths, lora: LoraSettings, seed: int,
                      base_adapter: dict[str, Any] | None = None, dtype: str = "fp32") -> tuple[Any, Any]:
    """The fp32 base (with `base_adapter` merged in, frozen) wrapped with a fresh trainable LoRA."""
    import torch
    from peft import get_peft_model, set_peft_model_state_dict

    torch.manual_seed(seed)
    model, tokenizer = load_causal_lm(model_file, paths)
    if base_adapter is not None:  # a task adapter under the user's: merge it into the frozen weights
        frozen = get_peft_model(model, _peft_config(base_adapter_settings(base_adapter), model))
        set_peft_model_state_dict(frozen, base_adapter["weights"])
        model = frozen.merge_and_unload()
    if dtype == "bf16":
        # The frozen base in bf16: autocast would cast it on every op anyway; this halves its memory and saves the
        # casts. PEFT keeps the trainable LoRA weights in fp32 (autocast_adapter_dtype).
        model = model.to(torch.bfloat16)
    peft_model = get_peft_model(model, _peft_config(lora, model))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return peft_model, tokenizer


def first_trained_layer(lora: LoraSettings, n_layers: int) -> int:
    return 0 if lora.layers is None else max(0, n_layers - lora.layers)


def _peft_config(lora: LoraSettings, model: Any) -> Any:
    from peft import LoraConfig

    n_layers = model.config.num_hidden_layers
    layers = list(range(first_trained_layer(lora, n_layers), n_layers)) if lora.layers is not None else None
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, layers_to_transform=layers,
                      target_modules=list(lora.target_modules), bias="none")


def base_adapter_settings(adapter: dict[str, Any]) -> LoraSettings:
    return TrainConfig.from_dict({"lora": adapter["lora"]}).lora


def _lr_at(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_lora(model_file: ModelFile, paths: Paths, examples: Sequence[Example], config: TrainConfig, *,
               pairs: Sequence[Preference] = (), storage: Storage | None = None, on_step: OnStep | None = None,
               base_adapter: dict[str, Any] | None = None, init_adapter: dict[str, Any] | None = None,
               on_phase: OnPhase | None = None) -> TrainResult:
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
    phase = on_phase or (lambda _: None)
    phase(f"loading the model ({config.dtype})")
    model, tokenizer = load_for_training(model_file, paths, config.lora, config.seed, base_adapter, config.dtype)
    if init_adapter is not None:
        set_peft_model_state_dict(model, init_adapter["weights"])
    if not config.train_a:
        for name, parameter in model.named_parameters():
            if "lora_A" in name:
                parameter.requires_grad_(False)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    rows = [encode(tokenizer, e.message_list(), e.target, config.max_len, target_end=config.target_end)
            for e in examples]
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
    started = time.perf_counter()  # training time includes the frozen layers' one pass over the data
    used = set(order[: config.steps * config.batch_size])
    if config.target_only:
        phase(f"frozen layers, once over {len(used) + 2 * len(pref_rows)} examples")
    step_loss = _Steps(model, tokenizer, config, rows, pref_rows, used)
    flops = step_loss.prepare_flops
    phase(f"training, {config.steps - start} steps" + (f" (resumed at step {start})" if start else ""))
    for step in range(start, config.steps):
        picked = order[step * config.batch_size:(step + 1) * config.batch_size]
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.dtype == "bf16"):
            loss, step_tokens, step_flops = step_loss(picked, step)  # backward is done inside, per micro-batch
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss)
        tokens += step_tokens
        flops += step_flops
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
                       config.dtype, step_loss.prepare_seconds, flops, model, tokenizer)


class _Steps:
    """One optimizer step's forward and backward passes: the fast path (lm/forward.py) or the naive full forward."""

    def __init__(self, model: Any, tokenizer: Any, config: TrainConfig, rows: list[Row],
                 pref_rows: list[tuple[Row, Row]], used: set[int]):
        import torch

        self.model, self.config, self.rows, self.pref_rows = model, config, rows, pref_rows
        self.pad = tokenizer.pad_token_id
        self.prepare_seconds, self.prepare_flops = 0.0, 0.0
        if not config.target_only:  # matmul weights of the whole model, for the naive loop's FLOP count
            self.all_weights = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "lora_" not in n)
            return
        split = LayerSplit(model, first_trained_layer(config.lora, model.config.num_hidden_layers))
        started = time.perf_counter()
        picked = sorted(used)  # rows no step will pick (fewer steps than the data) skip the frozen pass
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.dtype == "bf16"):
            cached = split.lower([rows[i][0] for i in picked] + [r[0] for pair in pref_rows for r in pair],
                                 config.micro_batch_tokens)
        self.prepare_seconds = time.perf_counter() - started
        hidden: list[Any] = [None] * len(rows)
        for i, h in zip(picked, cached, strict=False):
            hidden[i] = h
        self.split, self.hidden, self.pref_hidden = split, hidden, cached[len(picked):]
        per_layer, head = layer_weights(split)
        self.upper_weights, self.head_weights = sum(per_layer[split.first:]), head
        distinct = {id(h): len(h) for h in cached}  # repeated rows share one computed tensor
        self.prepare_flops = 2.0 * sum(distinct.values()) * sum(per_layer[: split.first])

    def __call__(self, picked: list[int], step: int) -> tuple[float, int, float]:
        """(loss, tokens, FLOPs) of one step; gradients are left on the trainable weights."""
        if not self.config.target_only:
            return self._naive(picked, step)
        labels = [self.rows[i][1] for i in picked]
        targets = max(1, sum(count_targets(lab) for lab in labels))
        loss, flops = 0.0, 0.0
        for group in micro_batches([len(labels[n]) for n in range(len(picked))], self.config.micro_batch_tokens):
            part_labels = [labels[n] for n in group]
            logprobs = self.split.target_logprobs([self.hidden[picked[n]] for n in group], part_labels)
            part = -logprobs.sum() / targets  # mean over the whole batch's targets, as one big batch would give
            part.backward()
            loss += float(part.detach())
            padded = len(group) * max(len(lab) for lab in part_labels)
            flops += 4.0 * (padded * self.upper_weights + sum(map(count_targets, part_labels)) * self.head_weights)
        if self.pref_rows:
            k = step % len(self.pref_rows)
            dpo = _dpo_loss(self.split, self.model, self.pref_hidden[2 * k: 2 * k + 2],
                            [self.pref_rows[k][0][1], self.pref_rows[k][1][1]], self.config.dpo_beta)
            dpo.backward()
            loss += float(dpo.detach())
        return loss, sum(len(self.rows[i][0]) for i in picked), flops

    def _naive(self, picked: list[int], step: int) -> tuple[float, int, float]:
        """The plain transformers loop: full forward over every layer and position, logits everywhere."""
        batch = _batch([self.rows[i] for i in picked], self.pad, self.config.pad_to)
        loss = self.model(**batch).loss
        loss.backward()
        return (float(loss.detach()), int(batch["attention_mask"].sum()),
                4.0 * batch["input_ids"].numel() * self.all_weights)


def _dpo_loss(split: LayerSplit, model: Any, hidden: list[Any], labels: list[list[int]], beta: float) -> Any:
    """DPO on one preference pair, the model without its adapter as the reference."""
    import torch
    import torch.nn.functional as F

    policy = split.target_logprobs(hidden, labels)
    with torch.no_grad(), model.disable_adapter():
        reference = split.target_logprobs(hidden, labels)
    margin = (policy[0] - reference[0]) - (policy[1] - reference[1])
    return -F.logsigmoid(beta * margin)


def sequence_logprobs(model: Any, tokenizer: Any, examples: Sequence[Example], *, use_adapter: bool = True,
                      max_len: int = 256) -> list[tuple[float, int]]:
    """(sum of target log-probabilities, target count) per example under a loaded PEFT model, adapter on or off."""
    import contextlib

    import torch

    model.eval()
    split = LayerSplit(model, 0)
    out = []
    switch = contextlib.nullcontext() if use_adapter else model.disable_adapter()
    with torch.no_grad(), switch:
        for e in examples:
            ids, labels = encode(tokenizer, e.message_list(), e.target, max_len)
            logprob = float(split.target_logprobs(split.lower([ids]), [labels])[0])
            out.append((logprob, count_targets(labels)))
    return out


def perplexity(model: Any, tokenizer: Any, examples: Sequence[Example], *, use_adapter: bool = True,
               max_len: int = 256) -> float:
    """Perplexity of the targets of `examples` under a loaded PEFT model, with or without its adapter."""
    if not examples:
        return float("nan")
    scored = sequence_logprobs(model, tokenizer, examples, use_adapter=use_adapter, max_len=max_len)
    return math.exp(-sum(lp for lp, _ in scored) / max(1, sum(n for _, n in scored)))
