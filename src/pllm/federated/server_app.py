"""The Flower ServerApp of one expert: each round it sends the expert's adapter to the clients, checks every update
that comes back, aggregates the accepted ones LoRA-aware (aggregate.py), adds DP noise when asked, scores the new
adapter on the expert's held-out exam, and credits each accepted contribution to its device in the ledger.

    app                                    # for `flwr run` / the deployment engine: config from the run config
    server_app(config, on_done=...)        # the same, configured in code (`pllm fed simulate`)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from pllm.cloud.ledger import Ledger
from pllm.config import Settings
from pllm.errors import PllmError, UsageError
from pllm.federated import dp
from pllm.federated.aggregate import Update, Weights, aggregate, change_norm, check_update, nbytes, sent_keys
from pllm.federated.task import (
    FedConfig,
    exam_of,
    exam_scores_with,
    from_record,
    lora_as_config,
    save_run,
    starting_adapter,
    to_record,
)
from pllm.lm.runtime import Runtime
from pllm.lm.train import LoraSettings
from pllm.stats import Bootstrap, mean_of

log = logging.getLogger("pllm.federated")


class TooFewClients(RuntimeError):
    """A round found fewer clients than it needs within its wait: the run ends there, cleanly."""


@dataclass
class FedRun:
    """What a run did, round by round: `pllm fed ... --json` prints it."""

    config: FedConfig
    scores: dict[int, list[float]] = field(default_factory=dict)  # round -> per exam question
    rounds: list[dict[str, Any]] = field(default_factory=list)
    ended: str = "completed"
    weights: Weights = field(default_factory=dict)

    @property
    def score_before(self) -> float:
        """The exam score of the starting adapter (0.0 before it was scored)."""
        return float(np.mean(self.scores[0])) if 0 in self.scores else 0.0

    @property
    def score_after(self) -> float:
        """The exam score of the last adapter scored."""
        return float(np.mean(self.scores[max(self.scores)])) if self.scores else 0.0

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"expert": self.config.expert, "score_before": round(self.score_before, 4),
                               "score_after": round(self.score_after, 4), "rounds": self.rounds,
                               "ended": self.ended, "config": self.config.as_run_config(),
                               "scores": {str(r): [round(x, 5) for x in v] for r, v in sorted(self.scores.items())}}
        last = max(self.scores) if self.scores else 0
        if last and 0 in self.scores:
            before, after = np.array(self.scores[0]), np.array(self.scores[last])
            low, high = Bootstrap(len(before), seed=self.config.seed).difference_interval(mean_of(after),
                                                                                          mean_of(before))
            out["gain_interval"] = [round(low, 4), round(high, 4)]
        if self.config.dp:
            out["epsilon"] = round(dp.epsilon(self.config.dp_noise, len(self.rounds)), 3)
            out["delta"] = dp.DELTA
        return out


class ExpertStrategy(FedAvg):
    """FedAvg's sampling and messaging; the checks, the LoRA-aware aggregation, DP and the ledger are pllm's."""

    def __init__(self, config: FedConfig, start: Weights, lora: LoraSettings, run: FedRun,
                 credit: Callable[[str, int, int], None] | None = None,
                 exam: Callable[[Weights], np.ndarray] | None = None) -> None:
        super().__init__(fraction_evaluate=0.0, min_train_nodes=config.min_clients,
                         min_available_nodes=config.min_clients)
        self.config = config
        self.current = start
        self.lora = lora
        self.run = run
        self.credit = credit
        self.exam = exam  # per-question exam scores of an adapter: the round's aggregate must not do worse
        self.scored: dict[int, np.ndarray] = {}  # round -> the exam scores of the adapter that round ends with
        self.rng = np.random.default_rng(config.seed)
        self.sent_down = 0

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
                        ) -> Iterable[Message]:
        deadline = time.monotonic() + self.config.wait_seconds
        while len(list(grid.get_node_ids())) < self.config.min_clients:
            if time.monotonic() > deadline:
                raise TooFewClients(f"round {server_round}: {len(list(grid.get_node_ids()))} client(s) connected "
                                    f"within {self.config.wait_seconds:.0f} s, {self.config.min_clients} needed")
            time.sleep(0.5)
        self.current = from_record(arrays)
        config["method"] = self.config.method
        config.update(lora_as_config(self.lora))
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self.sent_down = len(messages) * nbytes(self.current)
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        accepted: list[Update] = []
        rejected: list[dict[str, str]] = []
        dropped = 0
        losses = []
        sent_up = 0
        for reply in replies:
            if reply.has_error():
                dropped += 1
                log.info("round %d: node %s dropped out: %s", server_round, reply.metadata.src_node_id,
                         reply.error.reason)
                continue
            meta = reply.content.config_records.get("meta", ConfigRecord())
            device = str(meta.get("device", f"node-{reply.metadata.src_node_id}"))
            try:
                weights = from_record(reply.content.array_records["arrays"])
                examples = int(str(reply.content.metric_records["metrics"]["num-examples"]))
            except (KeyError, TypeError, ValueError) as exc:
                rejected.append({"device": device, "reason": f"malformed reply: {exc}"})
                continue
            sent_up += nbytes(weights)
            reason = check_update(weights, self.current, self.config.aggregation, self.config.max_norm)
            if reason is not None:
                log.warning("round %d: update from %s refused: %s", server_round, device, reason)
                rejected.append({"device": device, "reason": reason})
                continue
            accepted.append(Update(device, weights, examples))
            losses.append(float(str(reply.content.metric_records["metrics"].get("train-loss", 0.0))))
        info: dict[str, Any] = {"round": server_round, "accepted": len(accepted), "rejected": rejected,
                                "dropped": dropped, "bytes_down": self.sent_down, "bytes_up": sent_up}
        if not accepted:
            info["note"] = "no update accepted: the adapter stays as it was"
            self.run.rounds.append(info)
            return None, None
        new, details = aggregate(self.current, accepted, self.config.aggregation, self.config.robustness,
                                 uniform=self.config.dp)
        if self.config.dp:
            std = self.config.dp_noise * self.config.dp_clip / len(accepted)
            new = dp.add_noise(new, sent_keys(self.current, "ffa"), std, self.rng)
            info["epsilon"] = round(dp.epsilon(self.config.dp_noise, server_round), 3)
        norms = [change_norm(u.weights, self.current) for u in accepted]
        info.update(details, train_loss=round(float(np.mean(losses)), 4),
                    change_norms=[round(n, 4) for n in norms])
        for update in accepted:  # a sound update earns its credit whether or not the round's aggregate is kept
            if self.credit is not None:
                self.credit(update.device, server_round, update.examples)
        self.run.rounds.append(info)
        if self.exam is not None and not self._keeps(server_round, new, info):
            return to_record(self.current), MetricRecord({"accepted": len(accepted)})
        return to_record(new), MetricRecord({"accepted": len(accepted)})

    def _keeps(self, server_round: int, new: Weights, info: dict[str, Any]) -> bool:
        """The aggregate replaces the adapter only when the exam does not drop beyond its 95% paired interval (as
        the adaptation gate judges a personal adapter); otherwise the adapter stays as it was, and the round says so."""
        assert self.exam is not None
        before = self.scored.get(server_round - 1)
        if before is None:
            before = self.scored[server_round - 1] = self.exam(self.current)
        after = self.exam(new)
        low, high = Bootstrap(len(before), seed=self.config.seed).difference_interval(mean_of(after), mean_of(before))
        keep = high >= 0
        info["kept"] = keep
        info["exam_change_interval"] = [round(low, 4), round(high, 4)]
        if not keep:
            info["note"] = (f"aggregate refused: the exam would drop {float(after.mean() - before.mean()):+.4f} "
                            f"(95% interval [{low:+.4f}, {high:+.4f}]); the adapter stays as it was")
        self.scored[server_round] = after if keep else before
        return keep


def run_server(grid: Grid, config: FedConfig, settings: Settings,
               on_round: Callable[[int, float], None] | None = None) -> FedRun:
    """Every round of one run on `grid`; the run's record, whatever ended it."""
    start, lora = starting_adapter(settings, config)
    run = FedRun(config)
    exam = exam_of(config)
    runtime = Runtime.from_settings(settings)

    def examine(weights: Weights) -> np.ndarray:
        return exam_scores_with(runtime, weights, lora, exam)

    strategy = ExpertStrategy(config, start, lora, run, credit=_ledger_credit(settings, config), exam=examine)

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        scores = strategy.scored.get(server_round)  # the guard scored this round's adapter already
        if scores is None:
            scores = strategy.scored[server_round] = examine(from_record(arrays))
        run.scores[server_round] = [float(s) for s in scores]
        if server_round < len(run.rounds) + 1 and server_round > 0:
            run.rounds[server_round - 1]["domain_score"] = round(float(scores.mean()), 4)
        if on_round is not None:
            on_round(server_round, float(scores.mean()))
        return MetricRecord({"domain_score": float(scores.mean())})

    try:
        result = strategy.start(grid=grid, initial_arrays=to_record(start), num_rounds=config.rounds,
                                evaluate_fn=evaluate, train_config=ConfigRecord({"method": config.method}))
        run.weights = from_record(result.arrays)
    except TooFewClients as exc:
        run.ended = str(exc)
        run.weights = strategy.current
    finally:
        runtime.close()
    return run


def _ledger_credit(settings: Settings, config: FedConfig) -> Callable[[str, int, int], None]:
    """Each accepted update earns its device `ledger_update_credit`; a refused one earns nothing."""
    ledger = Ledger.in_folder(settings.paths.cloud)

    def credit(device: str, server_round: int, examples: int) -> None:
        ledger.append("credit", device, f"federated:{config.expert}", amount=settings.ledger_update_credit,
                      memo=f"round {server_round}: update accepted ({examples} examples)")

    return credit


def server_app(config: FedConfig, on_done: Callable[[FedRun | PllmError], None], settings: Settings | None = None,
               on_round: Callable[[int, float], None] | None = None) -> ServerApp:
    """A ServerApp for this run, configured in code; `on_done` gets the run's record, or the error that ended it
    (the simulation engine runs the app in a thread of its own and would only log it)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            on_done(run_server(grid, config, config.settings(settings), on_round))
        except PllmError as exc:
            on_done(exc)

    return app


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """The deployment engine's entry (`[tool.flwr.app.components]`): the run config says what to do."""
    config = FedConfig.from_run_config(dict(context.run_config))
    settings = config.settings()
    try:
        if config.secure:
            raise UsageError("--secure runs in `pllm fed simulate` only: a SuperNode's ClientApp is the plain one")
        record = run_server(grid, config, settings).as_json()
    except PllmError as exc:  # said in the record `pllm fed server` waits for, not only in Flower's log
        record = {"expert": config.expert, "ended": f"error: {exc}", "rounds": [], "config": config.as_run_config()}
    path = save_run(settings, context.run_id, record)
    log.info("federated run of %s ended (%s): %s", config.expert, record["ended"], path)



def secure_server_app(config: FedConfig, on_done: Callable[[FedRun | PllmError], None],
                      settings: Settings | None = None, on_round: Callable[[int, float], None] | None = None
                      ) -> ServerApp:
    """The same rounds under Flower's SecAgg+ (`--secure`): each client masks its update and the server learns
    only their sum, so no single device's update is ever seen. The price: what needs each update apart is gone (the
    per-update checks, median or clipping, a ledger credit per accepted update); FFA-LoRA's plain mean is what
    remains. SecAgg+ runs on Flower's older strategy API (`LegacyContext`), which the message API has no
    counterpart for yet. The adapter travels whole: A unchanged (the mean of equal A's is A, up to SecAgg's
    quantisation), B trained."""
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg as LegacyFedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            here = config.settings(settings)
            start, lora = starting_adapter(here, config)
            keys = sorted(start)
            run = FedRun(config)
            exam = exam_of(config)
            runtime = Runtime.from_settings(here)

            def evaluate(server_round: int, arrays: list[np.ndarray], _: dict[str, Any]
                         ) -> tuple[float, dict[str, Any]]:
                weights = dict(zip(keys, arrays, strict=True))
                scores = exam_scores_with(runtime, weights, lora, exam)
                run.scores[server_round] = [float(s) for s in scores]
                run.weights = weights
                if server_round > 0:
                    run.rounds.append({"round": server_round, "secure": True, "rejected": [], "dropped": 0,
                                       "accepted": config.clients, "bytes_down": 0, "bytes_up": 0,
                                       "domain_score": round(float(scores.mean()), 4)})
                if on_round is not None:
                    on_round(server_round, float(scores.mean()))
                return -float(scores.mean()), {"domain_score": float(scores.mean())}

            def fit_config(server_round: int) -> dict[str, Any]:
                return {"server-round": server_round, "method": "ffa", "keys": ",".join(keys), **lora_as_config(lora)}

            strategy = LegacyFedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=config.min_clients,
                                    min_available_clients=config.min_clients, evaluate_fn=evaluate,
                                    on_fit_config_fn=fit_config,
                                    initial_parameters=ndarrays_to_parameters([start[k] for k in keys]))
            legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=config.rounds), strategy=strategy)
            try:
                DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(num_shares=3, reconstruction_threshold=2))(grid,
                                                                                                         legacy)
            finally:
                runtime.close()
            on_done(run)
        except PllmError as exc:
            on_done(exc)

    return app
