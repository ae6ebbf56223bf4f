"""One adapter pipeline for every tier: train a LoRA on the shared trainer, export it for llama.cpp, free the torch
model; and one way to examine an adapter where it will serve (llama.cpp), adapter off against on.

The personal update (`pllm adapt`), an expert's distillation, a federated client's round and the benchmark's task
and per-user adapters all go through `train_adapter`; their learning rates come from `learning_rate`, one policy
with a named case per purpose.

    config = train_config(settings, Purpose.EXPERT, steps=60)
    trained = train_adapter(settings, examples, config)
    trained.gguf, trained.weights, trained.result.losses
    base, expert = examine(runtime, trained.gguf, lambda rt: exam_scores(rt, exam))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, TypeVar

import numpy as np

from pllm.config import Settings
from pllm.lm.export import BaseShape, gguf_lora_bytes
from pllm.lm.hardware import choose_train_dtype
from pllm.lm.models import ModelFile, resolve_model
from pllm.lm.runtime import Runtime
from pllm.lm.train import (
    Example,
    LoraSettings,
    OnPhase,
    OnStep,
    Preference,
    Storage,
    TrainConfig,
    TrainResult,
    train_lora,
)

T = TypeVar("T")


class Purpose(StrEnum):
    """What an adapter is for; each has its own learning rate (`learning_rate`)."""

    PERSONAL = "personal"  # the user's own update (`pllm adapt`): facts, texts, feedback, replay
    TASK = "task"  # a benchmark's task adapter and the per-user adapters stacked on it
    EXPERT = "expert"  # a domain expert distilled from the T-model
    FEDERATED = "federated"  # a client's local round of a federated expert


# Measured, each where its purpose is measured (docs/BENCHMARKS.md): a personal update of up to 200 examples learns
# its facts at 2.5e-3 in 20 steps; past that, 1e-3 keeps general chat within the gate's tolerance. Task and per-user
# adapters train a few dozen steps on labelled items (2e-3). Experts train longer on many distilled pairs (5e-4),
# and a federated round is a few steps from a trained expert (1e-3), where a larger rate undoes the expert.
PERSONAL_SMALL_UPDATE = 200


def learning_rate(purpose: Purpose, n_examples: int = 0) -> float:
    """The peak learning rate for an adapter of this purpose trained on `n_examples` examples."""
    if purpose is Purpose.PERSONAL:
        return 2.5e-3 if n_examples <= PERSONAL_SMALL_UPDATE else 1e-3
    return {Purpose.TASK: 2e-3, Purpose.EXPERT: 5e-4, Purpose.FEDERATED: 1e-3}[purpose]


def train_config(settings: Settings, purpose: Purpose, *, n_examples: int = 0, **overrides: Any) -> TrainConfig:
    """A TrainConfig for this machine (threads, the precision the CPU does fast) and purpose (learning rate);
    `overrides` set any other field (steps, lora, seed, ...)."""
    values: dict[str, Any] = {"threads": settings.threads, "dtype": choose_train_dtype(settings.train_dtype).dtype,
                              "lr": learning_rate(purpose, n_examples)}
    return TrainConfig(**{**values, **overrides})


@dataclass
class TrainedAdapter:
    """A trained adapter: for llama.cpp (GGUF bytes), for stacking or resuming (PEFT weights), and how it went."""

    gguf: bytes
    weights: dict[str, Any]  # PEFT state dict, CPU fp32 tensors
    config: TrainConfig
    result: TrainResult  # losses, seconds, peak RSS; its torch model is dropped unless asked to keep it

    @property
    def lora(self) -> LoraSettings:
        return self.config.lora

    def stacked(self) -> dict[str, Any]:
        """{"weights", "lora"}: what `train_lora` takes as `base_adapter` or `init_adapter`."""
        return {"weights": self.weights, "lora": asdict(self.lora)}

    def numpy_weights(self) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self.weights.items()}

    def safetensors(self) -> bytes:
        from safetensors.torch import save

        return bytes(save({k: v.contiguous() for k, v in self.weights.items()}))

    @property
    def mb(self) -> float:
        return len(self.gguf) / 1e6


def train_adapter(settings: Settings, examples: Sequence[Example], config: TrainConfig, *,
                  model_file: ModelFile | None = None, pairs: Sequence[Preference] = (),
                  storage: Storage | None = None, on_step: OnStep | None = None, on_phase: OnPhase | None = None,
                  base_adapter: dict[str, Any] | None = None, init_adapter: dict[str, Any] | None = None,
                  keep_model: bool = False) -> TrainedAdapter:
    """Train one adapter on the P-model (or `model_file`) and export it for llama.cpp.

    The torch model is freed before returning (`keep_model=True` keeps it on `result.model` for a torch-side
    check); `base_adapter` is merged into the frozen base first, `init_adapter` starts from earlier weights.
    """
    model_file = model_file or resolve_model(settings)
    result = train_lora(model_file, settings.paths, examples, config, pairs=pairs, storage=storage, on_step=on_step,
                        on_phase=on_phase, base_adapter=base_adapter, init_adapter=init_adapter)
    if not keep_model:
        result.model = result.tokenizer = None
    gguf = gguf_lora_bytes(result.adapter, BaseShape.of_gguf(model_file.path), alpha=config.lora.alpha)
    return TrainedAdapter(gguf=gguf, weights=result.adapter, config=config, result=result)


def weights_gguf(weights: dict[str, Any], lora: LoraSettings, runtime: Runtime) -> bytes:
    """PEFT weights (tensors or arrays) as a GGUF LoRA for the runtime's model."""
    return gguf_lora_bytes(weights, BaseShape.of_gguf(runtime.model.path), alpha=lora.alpha)


def with_adapter(runtime: Runtime, gguf: bytes, score: Callable[[Runtime], T], *, scale: float = 1.0) -> T:
    """`score(runtime)` with the adapter applied; the runtime is back on its base model afterwards."""
    with runtime.trying_adapter(gguf) as name:
        runtime.set_adapters({name: scale})
        return score(runtime)


def examine(runtime: Runtime, gguf: bytes, score: Callable[[Runtime], T]) -> tuple[T, T]:
    """(without, with): `score(runtime)` on the base model, then with the adapter applied, on llama.cpp."""
    return score(runtime), with_adapter(runtime, gguf, score)
