"""`pllm fed simulate|server|client`: federated rounds of an expert on Flower. Thin: parse, call, print.

`simulate` runs the ServerApp and the ClientApps on Flower's simulation engine (Ray) in this process; `server` and
`client` run them as separate processes on Flower's deployment engine (run.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pllm.console import console, err_console, print_json, progress_bar, settings_of
from pllm.errors import UsageError
from pllm.expert.domains import read_qa_jsonl
from pllm.extras import extra
from pllm.federated.aggregate import METHODS, ROBUST
from pllm.federated.run_config import FedConfig
from pllm.reports import Report
from pllm.stats import Bootstrap, mean_of

SUPERLINK = "127.0.0.1:9091"  # where `fed server` listens and `fed client` joins, unless told otherwise
# Options `fed simulate` and `fed server` share.
DP_CLIP = typer.Option(FedConfig.dp_clip, "--dp-clip", min=0.0, help="Differential privacy: clip each update's "
                       "change to this norm (0: off).")
DP_NOISE = typer.Option(FedConfig.dp_noise, "--dp-noise", min=0.0, help="Differential privacy: noise multiplier.")

fed_app = typer.Typer(help="Federated experts on Flower: devices improve an expert without sharing their data.",
                      no_args_is_help=True)


@fed_app.command("simulate")
def simulate(
    ctx: typer.Context,
    expert: str = typer.Option(..., "--expert", help="A registered expert (its distilled pairs become the clients' "
                               "data, split by topic; its exam scores every round)."),
    clients: int = typer.Option(FedConfig.clients, "--clients", min=1, max=64, help="Simulated devices."),
    rounds: int = typer.Option(FedConfig.rounds, "--rounds", min=1, max=100, help="Federated rounds."),
    method: str = typer.Option(None, "--method", help=f"Aggregation: {', '.join(METHODS)} (default: fedavg, which "
                               "gained most; ffa with DP or --secure)."),
    robust: str = typer.Option(FedConfig.robust, "--robust", help=f"Against poisoned updates: {', '.join(ROBUST)}."),
    steps: int = typer.Option(FedConfig.steps, "--steps", min=1, max=1000, help="Local optimizer steps per round."),
    lr: float = typer.Option(FedConfig.lr, "--lr", min=0.0, max=1.0, help="Local learning rate (0: the trainer's "
                             "policy for federated rounds, 1e-3)."),
    start: str = typer.Option(FedConfig.start, "--start", help="registered (the expert's adapter) or fresh "
                              "(B = 0)."),
    max_norm: float = typer.Option(FedConfig.max_norm, "--max-norm", min=0.0, help="Refuse an update whose change "
                                   "is larger."),
    dp_clip: float = DP_CLIP,
    dp_noise: float = DP_NOISE,
    secure: bool = typer.Option(FedConfig.secure, "--secure", help="Secure aggregation (Flower's SecAgg+): the "
                                "server learns only the sum of the updates."),
    poison: str = typer.Option(FedConfig.poison, "--poison", help="Measure an attack: 'ID:scale', 'ID:flip' or "
                               "'ID:nan' (client ID sends a poisoned update; comma-separated for several)."),
    drop: str = typer.Option(FedConfig.drop, "--drop", help="Measure a drop-out: 'ID:ROUND' (client ID fails in "
                             "that round)."),
    exam: int = typer.Option(FedConfig.exam, "--exam", min=0, help="Score each round on the exam's first N "
                             "questions (0: all)."),
    report: Path = typer.Option(None, "--report", help="Write report.md, results.json and a plot here."),
    json_out: bool = typer.Option(False, "--json", help="Print {score_before, score_after, rounds: [...]}."),
    verbose: bool = typer.Option(False, "--verbose", help="Show Flower's and Ray's own logs."),
) -> None:
    """Federated rounds of an expert on Flower's simulation engine, scored on the expert's held-out exam."""
    extra("flwr", "fed")  # one line naming the extra, not an ImportError, where Flower is not installed
    from pllm.federated.run import simulate_run  # heavy: imports flwr

    settings = settings_of(ctx)
    config = FedConfig(expert=expert, clients=clients, rounds=rounds, method=default_method(method, dp_clip, secure),
                       robust=robust, steps=steps,
                       lr=lr, start=start, max_norm=max_norm, dp_clip=dp_clip, dp_noise=dp_noise, poison=poison,
                       drop=drop, secure=secure, min_clients=min(FedConfig.min_clients, clients), seed=settings.seed,
                       exam=exam, home=str(settings.paths.home))
    with progress_bar() as bar:
        task = bar.add_task(f"fed {expert}: rounds", total=rounds + 1)

        def on_round(server_round: int, score: float) -> None:
            bar.advance(task)
            if not err_console.is_terminal:
                err_console.print(f"fed: round {server_round}/{rounds}, domain score {score:.4f}")

        run = simulate_run(config, settings, on_round=on_round, verbose=verbose)
    result = run.as_json()
    if report is not None:
        write_fed_report(result, report, command=_command(ctx))
    if json_out:
        print_json(result)
        return
    _print_run(result)


@fed_app.command("server")
def server(
    ctx: typer.Context,
    expert: str = typer.Option(..., "--expert", help="The registered expert the rounds improve."),
    rounds: int = typer.Option(FedConfig.rounds, "--rounds", min=1, max=100, help="Federated rounds."),
    address: str = typer.Option(SUPERLINK, "--address", help="Loopback HOST:PORT of the SuperLink."),
    min_clients: int = typer.Option(FedConfig.min_clients, "--min-clients", min=1, help="Clients a round waits for."),
    wait: float = typer.Option(300.0, "--wait", min=1.0, help="Seconds a round waits for them before the run ends "
                               "cleanly."),
    method: str = typer.Option(None, "--method", help=f"Aggregation: {', '.join(METHODS)} (default: fedavg, which "
                               "gained most; ffa with DP or --secure)."),
    robust: str = typer.Option(FedConfig.robust, "--robust", help=f"Against poisoned updates: {', '.join(ROBUST)}."),
    steps: int = typer.Option(FedConfig.steps, "--steps", min=1, max=1000, help="Local optimizer steps per round."),
    dp_clip: float = DP_CLIP,
    dp_noise: float = DP_NOISE,
    exam: int = typer.Option(FedConfig.exam, "--exam", min=0, help="Score each round on the exam's first N "
                             "questions (0: all)."),
    timeout: float = typer.Option(3600.0, "--timeout", min=1.0, help="Seconds the whole run may take."),
    json_out: bool = typer.Option(False, "--json", help="Print {score_before, score_after, rounds: [...]}."),
) -> None:
    """Run an expert's federated rounds on Flower's deployment engine: a SuperLink on loopback that devices join
    with `pllm fed client`; prints the run's record when it ends."""
    extra("flwr", "fed")
    from pllm.federated.run import submit_run, superlink, wait_for_run  # heavy: imports flwr

    settings = settings_of(ctx)
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise UsageError(f"--address is HOST:PORT, not {address!r}")
    config = FedConfig(expert=expert, rounds=rounds, min_clients=min_clients, wait_seconds=wait,
                       method=default_method(method, dp_clip, False),
                       robust=robust, steps=steps, dp_clip=dp_clip, dp_noise=dp_noise, seed=settings.seed,
                       exam=exam, home=str(settings.paths.home))
    with superlink(settings, host or "127.0.0.1", int(port)):
        err_console.print(f"fed: SuperLink on {address}; waiting for {min_clients} client(s): "
                          f"`pllm fed client --server {address} --data FILE`")
        run_id = submit_run(settings, config)
        result = wait_for_run(settings, run_id, timeout)
    if json_out:
        print_json(result)
        return
    _print_run(result)


@fed_app.command("client")
def client(
    ctx: typer.Context,
    server_address: str = typer.Option(SUPERLINK, "--server", help="HOST:PORT of the SuperLink."),
    data: Path = typer.Option(..., "--data", help="The domain pairs you consent to train on (jsonl of "
                              "question/answer); they never leave this device, only the adapter update does."),
    device: str = typer.Option(None, "--device", help="This device's name in the ledger (default: the host name)."),
) -> None:
    """Join an expert's federated rounds: train on your own consented data, send only the adapter update."""
    import socket

    extra("flwr", "fed")
    from pllm.federated.run import run_client  # heavy: imports flwr

    settings = settings_of(ctx)
    pairs = read_qa_jsonl(data)  # a malformed file is a one-line error here, not in Flower's log
    err_console.print(f"fed: {len(pairs)} pairs from {data}; joining {server_address} (Ctrl-C to leave)")
    raise typer.Exit(run_client(settings, server_address, data, device or socket.gethostname()))


def default_method(method: str | None, dp_clip: float, secure: bool) -> str:
    """The aggregation asked for, else FedAvg, except FFA-LoRA where only it is sound (DP's noise on B, SecAgg+)."""
    return method or ("ffa" if dp_clip > 0 or secure else FedConfig.method)


def _command(ctx: typer.Context) -> str:
    import sys

    return "pllm " + " ".join(sys.argv[1:]) if sys.argv else ctx.command_path


def _print_run(result: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"federated {result['expert']}: {result['config']['method']}, {result['config']['robust']}")
    for column in ("round", "accepted", "refused", "dropped", "domain score", "bytes up", "aggregation error"):
        table.add_column(column)
    for r in result["rounds"]:
        table.add_row(str(r["round"]), str(r["accepted"]), str(len(r["rejected"])), str(r["dropped"]),
                      f"{r.get('domain_score', float('nan')):.4f}", f"{r['bytes_up']:,}",
                      f"{r.get('aggregation_error', 0):.4f}")
    console.print(table)
    gain = result.get("gain_interval")
    console.print(f"domain score {result['score_before']:.4f} -> {result['score_after']:.4f}"
                  + (f", gain 95% interval [{gain[0]:+.4f}, {gain[1]:+.4f}]" if gain else "")
                  + (f"; epsilon {result['epsilon']} (delta {result['delta']})" if "epsilon" in result else ""))
    if result["ended"] != "completed":
        console.print(f"ended early: {result['ended']}")


def write_fed_report(result: dict[str, Any], folder: Path, *, command: str) -> Path:
    """report.md, results.json and the domain score per round (with the 95% interval of each round's mean)."""
    import numpy as np

    scores = {int(k): np.array(v) for k, v in result.get("scores", {}).items()}

    def draw(axis: Any) -> None:
        if 0 in scores:  # the gain over the starting adapter, paired by exam question
            rounds = sorted(scores)
            gains = [float((scores[r] - scores[0]).mean()) for r in rounds]
            bounds = [Bootstrap(len(scores[0]), seed=0).difference_interval(mean_of(scores[r]), mean_of(scores[0]))
                      for r in rounds]
            axis.errorbar(rounds, gains, yerr=[[g - b[0] for g, b in zip(gains, bounds, strict=True)],
                                               [b[1] - g for g, b in zip(gains, bounds, strict=True)]],
                          marker="o", capsize=4)
            axis.axhline(0, color="grey", linewidth=0.8)
            axis.set_xticks(rounds)
        axis.set_xlabel("round (0: the starting adapter)")
        axis.set_ylabel("exam gain over round 0 (nats/token)")
        axis.set_title(f"{result['expert']}: {result['config']['method']}, {result['config']['clients']} clients "
                       "(95% paired interval)", fontsize=9)

    rows = ["| round | accepted | refused | dropped | kept | exam change [95%] | domain score | bytes down "
            "| bytes up | aggregation error |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rounds"]:
        kept = {True: "yes", False: "**no**"}.get(r.get("kept"), "")
        rows.append(f"| {r['round']} | {r['accepted']} | {len(r['rejected'])} | {r['dropped']} | {kept} | "
                    f"{r.get('exam_change_interval', '')} | {r.get('domain_score', '')} | {r['bytes_down']:,} | "
                    f"{r['bytes_up']:,} | {r.get('aggregation_error', '')} |")
    report = Report(f"Federated {result['expert']}", command=command)
    report.add(f"score {result['score_before']:.4f} -> {result['score_after']:.4f}, gain 95% interval "
               f"{result.get('gain_interval')}")
    report.add("A round's aggregate is kept only when the exam does not drop beyond its 95% paired interval; a "
               "refused one leaves the adapter as it was (the exam then also chose which rounds count, so its final "
               "score is a selected one).")
    report.add(*rows)
    report.plot("rounds.png", draw, size=(5.5, 3.4))
    return report.write(folder, result)


def register(app: typer.Typer) -> None:
    app.add_typer(fed_app, name="fed")
