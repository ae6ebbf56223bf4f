"""Federated rounds of a real expert (the packaged model, a cooking adapter trained on the test corpus) on Flower:
on its simulation engine with a client that drops out and one that uploads garbage, and as separate processes on
loopback (a SuperLink, two SuperNodes) as a deployment runs; the ledger credits accepted updates only."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from pllm.cloud.ledger import Ledger
from pllm.config import get_settings
from pllm.expert.registry import ExpertRegistry
from pllm.expert.train import ExpertResult
from pllm.federated.task import FedConfig
from pllm.http_serving import free_port

CORPUS = Path(__file__).parents[1] / "data" / "cooking-corpus.jsonl"


def register(expert: ExpertResult) -> None:
    pairs = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    ExpertRegistry(get_settings().paths.experts).register(expert.card, expert.adapter, pairs, expert.weights)


def credited(device: str) -> float:
    ledger = Ledger.in_folder(get_settings().paths.cloud)
    return sum(e.amount for e in ledger.entries(device) if e.kind == "credit")


def test_the_run_config_in_the_flower_app_is_fedconfig() -> None:
    """`flwr run` refuses an override the app's [tool.flwr.app.config] does not list: the two must agree."""
    import tomllib

    from pllm.federated.run import APP

    listed = tomllib.loads(APP.read_text())["tool"]["flwr"]["app"]["config"]
    assert FedConfig.from_run_config(listed) == FedConfig()
    assert {k.replace("-", "_") for k in listed} == set(FedConfig().as_run_config())


@pytest.mark.slow
def test_a_simulated_round_survives_a_drop_out_and_refuses_a_broken_update(cooking_expert: ExpertResult) -> None:
    from pllm.federated.run import simulate_run

    register(cooking_expert)
    settings = get_settings()
    config = FedConfig(expert="cooking", clients=3, rounds=2, steps=2, method="ffa", drop="1:1", poison="2:nan",
                       exam=8, home=str(settings.paths.home))  # 8 exam questions score each round: quicker
    seen: list[tuple[int, float]] = []
    run = simulate_run(config, settings, on_round=lambda r, s: seen.append((r, s)))
    first, second = run.rounds
    assert (first["accepted"], first["dropped"]) == (1, 1)  # client 0 trained, client 1 dropped out
    assert len(first["rejected"]) == 1 and first["rejected"][0]["reason"].startswith("values that are not finite")
    assert (second["accepted"], second["dropped"]) == (2, 0) and len(second["rejected"]) == 1
    assert [r for r, _ in seen] == [0, 1, 2] and run.ended == "completed"
    assert first["aggregation_error"] < 1e-4  # FFA-LoRA: exact
    assert 0 < first["bytes_up"] < first["bytes_down"]  # B alone goes up, A and B come down
    assert len(run.scores[0]) == 8
    assert run.score_before == pytest.approx(sum(cooking_expert.expert_per_question[:8]) / 8, abs=0.02)
    assert run.weights and set(run.weights) == set(cooking_expert.weights)
    assert credited("sim-client-0") == 2 * settings.ledger_update_credit
    assert credited("sim-client-1") == settings.ledger_update_credit  # round 2 only
    assert credited("sim-client-2") == 0  # its updates were refused
    assert "gain_interval" in run.as_json() and len(run.as_json()["scores"]) == 3


@pytest.mark.slow
def test_server_and_clients_run_as_separate_processes_on_loopback(cooking_expert: ExpertResult, tmp_path: Path,
                                                                  pllm: Callable[..., subprocess.CompletedProcess[str]]
                                                                  ) -> None:
    register(cooking_expert)
    lines = CORPUS.read_text().splitlines()
    for i in (0, 1):
        (tmp_path / f"client{i}.jsonl").write_text("\n".join(lines[i::2]) + "\n")
    address = f"127.0.0.1:{free_port()}"
    script = str(Path(sys.executable).with_name("pllm"))
    server = subprocess.Popen([script, "fed", "server", "--expert", "cooking", "--rounds", "1", "--steps", "1",
                               "--address", address, "--wait", "240", "--timeout", "420", "--exam", "4",
                               "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    clients = []
    try:
        time.sleep(3)
        clients = [subprocess.Popen([script, "fed", "client", "--server", address, "--data",
                                     str(tmp_path / f"client{i}.jsonl"), "--device", f"phone-{i}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in (0, 1)]
        out, err = server.communicate(timeout=480)
    finally:
        for process in [*clients, server]:
            process.kill()  # as a crash would: what they started must end with them
            process.wait()
    nodes = [p for p in psutil.process_iter(["cmdline"]) if address in " ".join(p.info["cmdline"] or [])]
    assert psutil.wait_procs(nodes, timeout=30)[1] == [], "a SuperNode outlived its `pllm fed client`"
    assert server.returncode == 0, err[-2000:]
    result = json.loads(out)
    assert result["ended"] == "completed" and result["rounds"][0]["accepted"] == 2, result
    assert credited("phone-0") == credited("phone-1") == get_settings().ledger_update_credit
    # Bad input: a malformed data file is one line and exit 2, before anything joins a server.
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    bad = pllm("fed", "client", "--server", address, "--data", str(tmp_path / "bad.jsonl"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_round_with_too_few_clients_ends_cleanly(cooking_expert: ExpertResult,
                                                   pllm: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    register(cooking_expert)
    done = pllm("fed", "server", "--expert", "cooking", "--address", f"127.0.0.1:{free_port()}", "--wait", "3",
                "--exam", "1", "--json", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["ended"].startswith("round 1: 0 client(s) connected") and result["rounds"] == []


def test_bad_input_to_fed_is_one_line_and_exit_2(pllm: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    for args, says in ((("--expert", "nope"), "no registered expert 'nope'"),
                       (("--expert", "cooking", "--method", "average"), "unknown aggregation 'average'"),
                       (("--expert", "cooking", "--dp-clip", "1", "--robust", "median"), "differential privacy needs")):
        done = pllm("fed", "simulate", *args)
        assert done.returncode == 2 and says in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_round_under_secure_aggregation_trains_b_and_brings_a_back_unchanged(cooking_expert: ExpertResult) -> None:
    import numpy as np

    from pllm.federated.run import simulate_run

    register(cooking_expert)
    settings = get_settings()
    run = simulate_run(FedConfig(expert="cooking", clients=3, rounds=1, steps=1, method="ffa", secure=True, exam=2,
                                 home=str(settings.paths.home)), settings)
    assert run.ended == "completed" and sorted(run.scores) == [0, 1] and run.rounds[0]["secure"]
    start = cooking_expert.weights
    a_keys = [k for k in start if ".lora_A." in k]
    b_keys = [k for k in start if ".lora_B." in k]
    # A travels unchanged and comes back as the mean of equal values, up to SecAgg+'s quantisation of the
    # example-weighted values (6e-4 at most measured, against A's entries of about 0.04); B moved further.
    a_error = max(float(np.abs(run.weights[k] - start[k]).max()) for k in a_keys)
    b_change = max(float(np.abs(run.weights[k] - start[k]).max()) for k in b_keys)
    assert a_error < 2e-3 and b_change > a_error, (a_error, b_change)


def test_a_round_that_would_lower_the_exam_beyond_its_interval_is_refused() -> None:
    """The server's guard, with the exam a function of the adapter: an aggregate that scores clearly worse leaves the
    adapter as it was and the round says so; one within the noise, or better, is kept."""
    import numpy as np

    from pllm.federated.server_app import ExpertStrategy, FedRun
    from pllm.lm.train import LoraSettings

    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.05, 30)

    def exam(weights: dict[str, np.ndarray]) -> np.ndarray:  # a per-question score that follows the weight's value
        return -3.5 + weights["w"].mean() + noise

    config = FedConfig()
    strategy = ExpertStrategy(config, {"w": np.zeros(4)}, LoraSettings(), FedRun(config), exam=exam)
    worse, info = {"w": np.full(4, -0.2)}, {}
    assert not strategy._keeps(1, worse, info)
    assert info["kept"] is False and info["exam_change_interval"][1] < 0 and "refused" in info["note"]
    same, info = {"w": np.full(4, 0.001)}, {}
    assert strategy._keeps(2, same, info) and info["kept"] is True
    better, info = {"w": np.full(4, 0.3)}, {}
    assert strategy._keeps(3, better, info) and info["exam_change_interval"][0] > 0
