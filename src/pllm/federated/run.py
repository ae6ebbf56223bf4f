"""Running the Flower apps: on the simulation engine in this process (`simulate_run`), or as the separate processes
of the deployment engine on loopback (`pllm fed server` / `pllm fed client`)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pllm.config import Settings
from pllm.errors import PllmError, UsageError
from pllm.federated.client_app import client_app, secure_client_app
from pllm.federated.server_app import FedRun, secure_server_app, server_app
from pllm.federated.task import FedConfig, expert_pairs, results_path
from pllm.http_serving import free_port, serve_process
from pllm.processes import end_with_owner, stop_process


def quiet_flower(verbose: bool) -> None:
    """Flower and Ray log every step at INFO on stderr; pllm shows its own progress unless asked."""
    level = logging.INFO if verbose else logging.WARNING
    logging.getLogger("flwr").setLevel(level)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if not verbose:
        os.environ.setdefault("RAY_LOG_TO_STDERR", "0")


def simulate_run(config: FedConfig, settings: Settings, *, on_round: Callable[[int, float], None] | None = None,
                 verbose: bool = False) -> FedRun:
    """Every round of `config` on Flower's simulation engine: one ClientApp per simulated device, run one at a time
    (each trains with all of this machine's cores), the ServerApp in this process."""
    from flwr.simulation import run_simulation

    if len(expert_pairs(settings, config.expert)) < config.clients:  # fails early, with the reason
        raise UsageError(f"expert {config.expert!r} has fewer training pairs than --clients {config.clients}")
    quiet_flower(verbose)
    done: list[FedRun | PllmError] = []
    cores = os.cpu_count() or 1
    if config.secure:
        apps = (secure_server_app(config, done.append, settings, on_round=on_round), secure_client_app(config))
    else:
        apps = (server_app(config, done.append, settings, on_round=on_round), client_app(config))
    run_simulation(*apps,
                   num_supernodes=config.clients,
                   backend_config={"client_resources": {"num_cpus": cores, "num_gpus": 0.0},
                                   # Ray on loopback: nothing of a run is reachable from outside this machine.
                                   "init_args": {"num_cpus": cores, "include_dashboard": False,
                                                 "_node_ip_address": "127.0.0.1",
                                                 "logging_level": logging.INFO if verbose else logging.ERROR,
                                                 "log_to_driver": verbose}},
                   verbose_logging=verbose)
    if not done:
        raise UsageError("the federated run did not finish (run again with --verbose to see Flower's log)")
    if isinstance(done[0], PllmError):
        raise done[0]
    return done[0]


# -- the deployment engine: a SuperLink, SuperNodes and the run, each its own process, on loopback -----------------
APP = Path(__file__).parent / "app" / "pyproject.toml"  # the Flower app `flwr run` submits


def flower_home(settings: Settings) -> Path:
    """Flower's own state (its config.toml, the installed app) under the cloud's folder, not in ~/.flwr."""
    return settings.paths.cloud / "flower"


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _flower_env(settings: Settings) -> dict[str, str]:
    """Flower's processes start others by name (the SuperLink its SuperExec): this environment's first on PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "FLWR_HOME": str(flower_home(settings)), "PATH": path}


@contextmanager
def superlink(settings: Settings, host: str, port: int) -> Iterator[str]:
    """A Flower SuperLink on `host:port` (its Fleet, Control and runtime APIs share that one HTTP port), with a
    connection named "pllm" to it in Flower's config; stopped on exit."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise UsageError(f"the federated server listens on loopback only, not {host!r}")
    home = flower_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(f'[superlink]\ndefault = "pllm"\n\n[superlink.pllm]\n'
                                      f'address = "{host}:{port}"\ninsecure = true\n', encoding="utf-8")
    command = [_tool("flower-superlink"), "--insecure", "--host", host, "--port", str(port)]
    with serve_process(command, port, _flower_env(settings), home / "superlink.log", ready_path="/health",
                       timeout_s=60) as base:
        yield base


def submit_run(settings: Settings, config: FedConfig) -> str:
    """`flwr run` of pllm's Flower app with this run config on the "pllm" SuperLink; the run's id."""
    app = flower_home(settings) / "app"
    app.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(APP, app / "pyproject.toml")
    overrides = " ".join(f"{key.replace('_', '-')}={json.dumps(value)}" for key, value in
                         config.as_run_config().items())
    done = subprocess.run([_tool("flwr"), "run", str(app), "pllm", "--run-config", overrides, "--format", "json"],
                          env=_flower_env(settings), capture_output=True, text=True, timeout=120)
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        answer = {}
    if not answer.get("success") or not answer.get("run-id"):
        why = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no answer"])[-1]
        raise UsageError(f"flwr run failed: {why}")
    return str(answer["run-id"])


def wait_for_run(settings: Settings, run_id: str, timeout_s: float, on_wait: Callable[[], None] | None = None
                 ) -> dict[str, object]:
    """The run's record once its ServerApp has written it."""
    path = results_path(settings, run_id)
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if time.monotonic() > deadline:
            raise UsageError(f"run {run_id} did not finish within {timeout_s:.0f} s (its log: `FLWR_HOME="
                             f"{flower_home(settings)} flwr log {run_id} pllm`)")
        if on_wait is not None:
            on_wait()
        time.sleep(1.0)
    return dict(json.loads(path.read_text(encoding="utf-8")))


def run_client(settings: Settings, server: str, data: Path, device: str) -> int:
    """A Flower SuperNode for this device until it is stopped: it runs pllm's ClientApp on `data` for each round the
    server asks for. Its exit status."""
    node_config = f"data={json.dumps(str(data.resolve()))} device={json.dumps(device)} " \
                  f"home={json.dumps(str(settings.paths.home))}"
    command = [_tool("flower-supernode"), "--insecure", "--superlink", server, "--host", "127.0.0.1", "--port",
               str(free_port()), "--node-config", node_config]
    node = subprocess.Popen(command, env=_flower_env(settings), preexec_fn=end_with_owner)
    try:
        return node.wait()
    finally:  # stopped (Ctrl-C, an error): the SuperNode goes with us
        stop_process(node)
