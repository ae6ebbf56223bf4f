"""The federated rounds' pure parts, as in Flower's own example layout: what a client trains, how the server scores
the expert; the run's configuration is `FedConfig` (run_config.py, light, so the CLI's options can read it).
The Flower apps (server_app.py, client_app.py) stay thin around these.

    config = FedConfig(expert="cooking", clients=5, rounds=3)
    start, lora = starting_adapter(settings, config)
    sent, examples, loss = train_update(settings, start, lora, my_pairs, config)   # on a client
    scores = exam_scores_with(runtime, weights, lora, exam)                        # on the server
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pllm.config import Settings
from pllm.errors import UsageError
from pllm.expert.domains import QA, load_domain
from pllm.expert.registry import ExpertRegistry
from pllm.expert.train import exam_scores, examples_of
from pllm.federated.aggregate import Weights, clip_change, sent_keys
from pllm.federated.run_config import FedConfig
from pllm.files import atomic_write
from pllm.lm.adapter import Purpose, learning_rate, train_adapter, train_config, weights_gguf, with_adapter
from pllm.lm.embeddings import encode_cached, need_embedder, spherical_kmeans
from pllm.lm.models import resolve_model
from pllm.lm.runtime import Runtime
from pllm.lm.train import LoraSettings, TrainConfig, load_for_training


def expert_pairs(settings: Settings, expert: str) -> list[QA]:
    """The pairs the expert was distilled from: in a simulation, the clients' domain data."""
    path = ExpertRegistry(settings.paths.experts).folder / expert / "pairs.jsonl"
    if not path.is_file():
        raise UsageError(f"no registered expert {expert!r} with training pairs in {settings.paths.experts}: "
                         f"`pllm expert train {expert}` first")
    return [QA(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@functools.lru_cache(maxsize=4)
def _partitions(pairs: tuple[QA, ...], parts: int, cache: Path | None) -> tuple[tuple[QA, ...], ...]:
    vectors = encode_cached(need_embedder("the clients' partitions"), [p.question for p in pairs], cache)
    assign = spherical_kmeans(vectors, parts)
    return tuple(tuple(p for p, a in zip(pairs, assign, strict=True) if a == part) for part in range(parts))


def client_partition(pairs: Sequence[QA], part: int, parts: int, cache: Path | None = None) -> list[QA]:
    """Client `part` of `parts`: one cluster of the pairs by question embedding (k-means), so each client holds a
    different corner of the domain, as real users would, not an even shuffle. The embeddings are kept in `cache`:
    every simulated client is a process of its own and would embed the same pairs again."""
    return list(_partitions(tuple(pairs), parts, cache)[part])


def lora_of(settings: Settings, expert: str) -> LoraSettings:
    """The expert's adapter shape, as its card recorded it (the trainer's default for an older card)."""
    card = ExpertRegistry(settings.paths.experts).card(expert)
    recorded = card.details.get("lora")
    return TrainConfig.from_dict({"lora": recorded}).lora if recorded else LoraSettings()


def starting_adapter(settings: Settings, config: FedConfig) -> tuple[Weights, LoraSettings]:
    """Round 0's adapter: the registered expert's, or a fresh LoRA (PEFT's initialisation: A random, B = 0)."""
    lora = lora_of(settings, config.expert)
    if config.start == "registered":
        weights = ExpertRegistry(settings.paths.experts).weights(config.expert)
        if weights is None:
            raise UsageError(f"expert {config.expert!r} was registered without its PEFT weights; use --start fresh "
                             "or train it again")
        return weights, lora
    if config.start != "fresh":
        raise UsageError(f"--start is registered or fresh, not {config.start!r}")
    from peft import get_peft_model_state_dict

    model, _ = load_for_training(resolve_model(settings), settings.paths, lora, config.seed)
    return {k: v.detach().float().numpy().copy() for k, v in get_peft_model_state_dict(model).items()}, lora


def train_update(settings: Settings, start: Weights, lora: LoraSettings, pairs: Sequence[QA], config: FedConfig,
                 *, round_seed: int = 0) -> tuple[Weights, float]:
    """A client's round: train from the round's adapter on its own pairs with the shared trainer; return what it
    sends (B alone under FFA-LoRA, its change clipped when DP is on) and its last loss."""
    import torch

    train = train_config(settings, Purpose.FEDERATED, lora=lora, steps=config.steps, batch_size=config.batch_size,
                         warmup=1, seed=config.seed + round_seed, train_a=config.method != "ffa",
                         lr=config.lr or learning_rate(Purpose.FEDERATED))
    trained = train_adapter(settings, examples_of(pairs), train,
                            init_adapter={"weights": {k: torch.from_numpy(np.array(v)) for k, v in start.items()}})
    weights = trained.numpy_weights()
    sent = {k: weights[k] for k in sent_keys(start, config.aggregation)}
    if config.dp:
        sent = clip_change(sent, start, config.dp_clip)
    return sent, float(trained.result.losses[-1])


def poisoned(update: Weights, start: Weights, kind: str) -> Weights:
    """A poisoned client's update: its change scaled up tenfold ("scale"), turned against the others, sign flipped
    and fourfold ("flip"), or broken ("nan": values that are not numbers, as a corrupted upload would carry)."""
    if kind == "nan":
        return {k: np.full_like(v, np.nan) for k, v in update.items()}
    factor = {"scale": 10.0, "flip": -4.0}.get(kind)
    if factor is None:
        raise UsageError(f"poison is scale, flip or nan, not {kind!r}")
    return {k: (start[k] + factor * (v - start[k])).astype(np.float32) for k, v in update.items()}


def client_fault(spec: str, client: int) -> str:
    """The fault this simulation gives client `client` ("ID:VALUE" specs, comma-separated), "" for none."""
    for item in filter(None, (s.strip() for s in spec.split(","))):
        who, _, value = item.partition(":")
        if who.strip() == str(client):
            return value.strip()
    return ""


def lora_as_config(lora: LoraSettings) -> dict[str, int | str]:
    """The adapter's shape as the server announces it in each round's config (flat, as Flower's records are)."""
    return {"lora-r": lora.r, "lora-alpha": lora.alpha, "lora-layers": lora.layers or 0,
            "lora-modules": ",".join(lora.target_modules)}


def lora_from_config(config: Any) -> LoraSettings:
    """The adapter's shape from a round's config (`lora_as_config`): the client needs no copy of the expert's
    card."""
    layers = int(str(config["lora-layers"]))
    return LoraSettings(r=int(str(config["lora-r"])), alpha=int(str(config["lora-alpha"])),
                        target_modules=tuple(str(config["lora-modules"]).split(",")),
                        layers=layers if layers > 0 else None)


def exam_of(config: FedConfig) -> list[QA]:
    """The exam questions that score each round of this run."""
    exam = load_domain(config.expert).exam
    return list(exam[:config.exam] if config.exam else exam)


def exam_scores_with(runtime: Runtime, weights: Weights, lora: LoraSettings, exam: Sequence[QA]) -> np.ndarray:
    """Per exam question: the mean log-probability per token of its reference answer, with this adapter on the
    llama.cpp runtime the expert is served from."""
    return with_adapter(runtime, weights_gguf(weights, lora, runtime), lambda rt: exam_scores(rt, exam))


def to_record(weights: Weights) -> Any:
    """An adapter as Flower's ArrayRecord: what travels between the ServerApp and the ClientApps."""
    from flwr.app import Array, ArrayRecord

    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in weights.items()})


def from_record(record: Any) -> Weights:
    return {k: a.numpy() for k, a in record.items()}


def results_path(settings: Settings, run_id: int | str) -> Path:
    """Where the ServerApp writes a run's record when it ends (the deployment engine returns nothing)."""
    return settings.paths.cloud / "federated" / f"run-{run_id}.json"


def save_run(settings: Settings, run_id: int | str, record: dict[str, object]) -> Path:
    path = results_path(settings, run_id)
    atomic_write(path, json.dumps(record, indent=1) + "\n")
    return path
