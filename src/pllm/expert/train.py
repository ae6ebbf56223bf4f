"""T -> E distillation, its second half: train the expert's adapter on the distilled pairs with the shared trainer,
examine it against the bare base on the domain's exam (on llama.cpp, as it will be served), and register it only
when it is better outside the 95% interval.

    result = train_expert(settings, domain, pairs, report, ExpertTrainConfig(steps=60))
    result.registered, result.card.domain_score, result.card.base_score

The exam score is the mean log-probability per token of each reference answer as the reply to its question: how
much more the expert expects the right answer than the base does. It needs no judge and no sampling, and it is
paired by question, so a small exam still tells the two apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pllm.config import Settings
from pllm.expert.distill import DistillReport
from pllm.expert.domains import QA, Domain
from pllm.expert.registry import ExpertCard, ExpertRegistry
from pllm.lm.adapter import Purpose, examine, train_adapter, train_config
from pllm.lm.hardware import cpu_info
from pllm.lm.models import resolve_model
from pllm.lm.runtime import Runtime
from pllm.lm.train import Example, LoraSettings
from pllm.stats import Bootstrap, mean_of


@dataclass(frozen=True)
class ExpertTrainConfig:
    steps: int = 60  # optimizer steps (the learning rate is the trainer's policy for experts)
    batch_size: int = 8
    lora: LoraSettings = field(default_factory=LoraSettings)


@dataclass
class ExpertResult:
    card: ExpertCard
    registered: bool
    reason: str
    base_per_question: list[float]
    expert_per_question: list[float]
    adapter: bytes  # the GGUF LoRA, registered or not
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # the same LoRA in PEFT's naming


def examples_of(pairs: Sequence[QA]) -> list[Example]:
    return [Example.of([{"role": "user", "content": p.question}], p.answer) for p in pairs]


def exam_scores(runtime: Runtime, exam: Sequence[QA]) -> np.ndarray:
    """Per question: mean log-probability per token of the reference answer, with the runtime's adapters as set."""
    scores = []
    for qa in exam:
        logprob, tokens = runtime.answer_logprob([{"role": "user", "content": qa.question}], qa.answer)
        scores.append(logprob / max(1, tokens))
    return np.array(scores)


def train_expert(settings: Settings, domain: Domain, pairs: Sequence[QA], distilled: DistillReport,
                 config: ExpertTrainConfig = ExpertTrainConfig(), *,
                 on_step: Callable[[int, int, float], None] | None = None,
                 on_phase: Callable[[str], None] | None = None, register: bool = True) -> ExpertResult:
    if not pairs:
        raise ValueError("no training pairs survived the filters")
    phase = on_phase or (lambda _: None)
    model_file = resolve_model(settings)
    train = train_config(settings, Purpose.EXPERT, lora=config.lora, steps=config.steps,
                         batch_size=config.batch_size, seed=settings.seed)
    trained = train_adapter(settings, examples_of(pairs), train, model_file=model_file, on_step=on_step,
                            on_phase=on_phase)
    result, gguf, weights, dtype = trained.result, trained.gguf, trained.numpy_weights(), train.dtype
    phase(f"exam: {len(domain.exam)} held-out questions, base then expert, on llama.cpp")
    runtime = Runtime.from_settings(settings)
    try:
        base, expert = examine(runtime, gguf, lambda rt: exam_scores(rt, domain.exam))
    finally:
        runtime.close()
    low, high = Bootstrap(len(base), seed=settings.seed).difference_interval(mean_of(expert), mean_of(base))
    details: dict[str, Any] = {"steps": config.steps, "lr": train.lr, "lora_r": config.lora.r,
                               "lora": asdict(config.lora), "train_seconds": round(result.seconds, 1),
                               "train_dtype": dtype,
                               "final_loss": round(result.losses[-1], 4), "cpu": cpu_info().model,
                               "distillation": distilled.as_dict()}
    card = ExpertCard(name=domain.name, title=domain.title, description=domain.description,
                      examples=list(domain.examples), domain_score=round(float(expert.mean()), 4),
                      base_score=round(float(base.mean()), 4), gain_interval=(round(low, 4), round(high, 4)),
                      n_eval=len(domain.exam), exam_source=domain.exam_source, base_model=model_file.name,
                      t_model=distilled.t_model, train_pairs=len(pairs), details=details)
    better = low > 0
    figures = (f"exam score {card.base_score:.3f} (base) -> {card.domain_score:.3f} (expert), gain 95% interval "
               f"[{low:+.3f}, {high:+.3f}] over {card.n_eval} questions")
    if better and register:
        ExpertRegistry(settings.paths.experts).register(
            card, gguf, [{"question": p.question, "answer": p.answer} for p in pairs], weights)
        reason = f"registered: better than the bare base outside the interval; {figures}"
    elif better:
        reason = f"better than the bare base, not registered (asked not to); {figures}"
    else:
        reason = f"not registered: not better than the bare base outside the interval; {figures}"
    return ExpertResult(card=card, registered=better and register, reason=reason, base_per_question=list(base),
                        expert_per_question=list(expert), adapter=gguf, weights=weights)
