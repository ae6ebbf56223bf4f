"""One federated run's configuration: flat, so it travels as Flower's run config (`[tool.flwr.app.config]` in
app/pyproject.toml, which a test keeps equal to it), and light, so the CLI's options take their defaults from it.

    config = FedConfig(expert="cooking", clients=5, rounds=3)
    config.as_run_config()           # what Flower carries to the server and client apps
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from pllm.config import Settings, get_settings
from pllm.errors import UsageError
from pllm.federated.aggregate import METHODS, ROBUST, Method, Robust


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
