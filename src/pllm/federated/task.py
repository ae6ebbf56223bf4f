"""The federated rounds' pure parts, as in Flower's own example layout: what a client trains, how the server scores
the expert, the run's configuration. The Flower apps (server_app.py, client_app.py) stay thin around these.

    config = FedConfig(expert="cooking", clients=5, rounds=3)
    start, lora = starting_adapter(settings, config)
    sent, examples, loss = train_update(settings, start, lora, my_pairs, config)   # on a client
    scores = exam_scores_with(runtime, weights, lora, exam)                        # on the server
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from pllm.config import Settings, get_settings
from pllm.errors import UsageError
from pllm.expert.domains import QA, load_domain
from pllm.expert.registry import ExpertRegistry
from pllm.expert.train import exam_scores, examples_of
from pllm.federated.aggregate import METHODS, ROBUST, Method, Robust, Weights, clip_change, sent_keys
from pllm.files import atomic_write
from pllm.lm.adapter import Purpose, learning_rate, train_adapter, train_config, weights_gguf, with_adapter
from pllm.lm.embeddings import encode_cached, need_embedder, spherical_kmeans
from pllm.lm.models import resolve_model
from pllm.lm.runtime import Runtime
from pllm.lm.train import LoraSettings, TrainConfig, load_for_training


@dataclass(frozen=True)
class FedConfig:
    """One federated run of an expert. Flat, so it travels as Flower's run config (`[tool.flwr.app.config]`)."""

    expert: str = "cooking"
    rounds: int = 3
    clients: int = 5  # simulation: clients, each holding a different part of the domain's data
    min_clients: int = 2  # a round waits for this many (up to wait_seconds), else the run ends cleanly
    wait_seconds: float = 120.0
    steps: int = 8  # local optimizer steps per round
    batch_size: int = 4
    lr: float = 0.0  # local learning rate (0: the trainer's policy for federated rounds, lm.adapter.learning_rate)
    method: str = "fedavg"  # fedavg, ffa, svd (aggregate.py); fedavg gained most in the same rounds (BENCHMARKS)
    robust: str = "mean"  # mean, median, clipped
    max_norm: float = 20.0  # an update whose change is larger is refused
    dp_clip: float = 0.0  # > 0: differential privacy, clients clip their change to this norm
    dp_noise: float = 0.0  # ... and the server adds noise: this multiplier times dp_clip over the clients
    secure: bool = False  # SecAgg+: the server learns only the sum of the updates (simulation; ffa and mean only)
    start: str = "registered"  # registered: the expert's current adapter; fresh: a new LoRA (B = 0, the bare base)
    seed: int = 0
    exam: int = 0  # the exam questions that score each round, from the first (0: all of them; fewer: quicker)
    home: str = ""  # the pllm home whose experts, models and ledger the run uses ("" : the settings' default)
    poison: str = ""  # simulation only: "ID:scale" or "ID:flip", a client sending a poisoned update
    drop: str = ""  # simulation only: "ID:ROUND", a client that fails in that round

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"unknown aggregation {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.robust not in ROBUST:
            raise UsageError(f"unknown robust option {self.robust!r}; choose one of {', '.join(ROBUST)}")
        if self.dp_clip > 0 and (self.method != "ffa" or self.robust != "mean"):
            raise UsageError("differential privacy needs --method ffa and --robust mean (noise on B, a plain mean)")
        if self.secure and (self.method != "ffa" or self.robust != "mean" or self.dp or self.clients < 3):
            raise UsageError("--secure (SecAgg+) needs --method ffa, --robust mean, no DP and at least 3 clients: "
                             "the server sees only the sum, so nothing that needs each update apart can run")
        if self.rounds < 1 or self.clients < 1 or self.steps < 1:
            raise UsageError("rounds, clients and steps must be at least 1")
        if self.exam < 0:
            raise UsageError("--exam is a number of exam questions, 0 for all")

    @property
    def aggregation(self) -> Method:
        return self.method  # type: ignore[return-value]

    @property
    def robustness(self) -> Robust:
        return self.robust  # type: ignore[return-value]

    @property
    def dp(self) -> bool:
        return self.dp_clip > 0

    def as_run_config(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_run_config(cls, raw: dict[str, Any]) -> FedConfig:
        """From Flower's run config (keys may use dashes, as TOML ones do); unknown keys are ignored."""
        known = {f.name: f.type for f in fields(cls)}
        values = {k.replace("-", "_"): v for k, v in raw.items()}
        return cls(**{k: v for k, v in values.items() if k in known})

    def settings(self, base: Settings | None = None) -> Settings:
        if self.home:
            return get_settings(home=Path(self.home))
        return base or get_settings()


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
