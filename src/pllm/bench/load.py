"""`pllm bench --load`: concurrent clients against the real `pllm serve` on loopback, and the same load against
llama-cpp-python's own server (`llama_cpp.server`, from the installed wheel) on the packaged model.

Each of `clients` clients sends streamed chat completions back to back (a short question, up to `max_tokens`
tokens); a request started before the end of its slice is waited for. Both servers run the model on one context, so
a request's latency is its wait in the queue plus its own time. The machines are shared and their speed drifts by
several times over a minute, so the servers run side by side and take turns: `seconds` of load each, in ROUNDS
slices, the order rotating. Compare them by their ratio in the same run, not across runs. Per server: requests,
errors, p50/p99 latency and time to first token, tokens/s served. pllm is measured twice: on the base model (the
same messages the reference gets) and personalised (the made-up user of the latency bench: profile, retrieved notes
and the logging of every answer in the encrypted vault).
Loopback only: every server binds 127.0.0.1 on a free port and is stopped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pllm.bench.latency import build_vault
from pllm.config import Settings
from pllm.http_serving import free_port, serve_process
from pllm.lm.hardware import cpu_info
from pllm.lm.models import resolve_model
from pllm.openai_http import sse_data

QUESTIONS = ["What should I cook tonight?", "Give me one tip for running in the cold.", "Why is the sky blue?",
             "How do I keep a sourdough starter alive?", "Suggest a name for a small sailing boat.",
             "What is a good stretch after a night shift?", "How long should rye dough prove?",
             "Tell me a fact about cats."]
ROUNDS = 3  # slices of each server's load, interleaved
PASSPHRASE = "load-bench"  # the made-up user's throwaway vault, deleted with its folder

# llama_cpp.server, with the model on plain CPU buffers as pllm loads it (AMX buffers crash on some CPUs: see
# pllm.lm.runtime.load_llama); the only other change is that requests queue (--interrupt_requests False).
REFERENCE_SERVER = """
import runpy, sys
import llama_cpp.llama_cpp as C
defaults = C.llama_model_default_params
def plain_buffers():
    params = defaults()
    params.use_extra_bufts = False
    return params
C.llama_model_default_params = plain_buffers
sys.argv = ["llama_cpp.server", *sys.argv[1:]]
runpy.run_module("llama_cpp.server", run_name="__main__")
"""


@dataclass
class Outcome:
    """What the clients saw of one server."""

    name: str
    latencies: list[float] = field(default_factory=list)
    first_tokens: list[float] = field(default_factory=list)
    tokens: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float | None:
            if not values:
                return None
            ordered = sorted(values)
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

        return {"server": self.name, "requests": len(self.latencies), "errors": len(self.errors),
                "error_examples": self.errors[:3],
                "latency_p50": pct(self.latencies, 0.5), "latency_p99": pct(self.latencies, 0.99),
                "first_token_p50": pct(self.first_tokens, 0.5), "first_token_p99": pct(self.first_tokens, 0.99),
                "tokens_per_second": round(self.tokens / self.seconds, 2) if self.seconds else 0.0,
                "mean_first_token": round(statistics.mean(self.first_tokens), 3) if self.first_tokens else None}


async def _client(n: int, base: str, model: str, max_tokens: int, until: float, outcome: Outcome,
                  tick: Callable[[], None]) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(600.0)) as client:
        k = n
        while time.monotonic() < until:
            body = {"model": model, "stream": True, "max_tokens": max_tokens, "temperature": 0.0,
                    "messages": [{"role": "user", "content": QUESTIONS[k % len(QUESTIONS)]}]}
            k += 1
            started = time.monotonic()
            first = None
            pieces = 0
            try:
                async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                    if response.status_code != 200:
                        outcome.errors.append(f"HTTP {response.status_code}: {(await response.aread())[:120]!r}")
                        continue
                    async for line in response.aiter_lines():
                        chunk = sse_data(line)
                        if chunk is None:
                            continue
                        delta = chunk["choices"][0].get("delta", {}).get("content")
                        if delta:
                            pieces += 1
                            first = first if first is not None else time.monotonic() - started
            except (httpx.HTTPError, json.JSONDecodeError, KeyError, IndexError) as exc:
                outcome.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            outcome.latencies.append(time.monotonic() - started)
            outcome.first_tokens.append(first if first is not None else outcome.latencies[-1])
            outcome.tokens += pieces
            tick()


def drive(base: str, model: str, outcome: Outcome, *, clients: int, seconds: float, max_tokens: int,
          tick: Callable[[], None] = lambda: None) -> None:
    """`clients` streaming clients against one server for `seconds` (requests in flight at the end finish); what
    they see is added to `outcome`."""

    async def main() -> None:
        until = time.monotonic() + seconds
        started = time.monotonic()
        await asyncio.gather(*(_client(n, base, model, max_tokens, until, outcome, tick) for n in range(clients)))
        outcome.seconds += time.monotonic() - started

    asyncio.run(main())


def _pllm_env(settings: Settings, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLLM_")}
    env.update({"PLLM_HOME": str(home), "PLLM_CACHE_DIR": str(settings.cache_dir), "PLLM_PASSPHRASE": PASSPHRASE,
                "PLLM_THREADS": str(settings.threads), "PLLM_CONFIG": str(home / "no-config.toml"),
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    if settings.model is not None:
        env["PLLM_MODEL"] = str(settings.model)
    return env


SERVERS = ("base", "personal", "reference")


def run_load_bench(settings: Settings, *, clients: int = 20, seconds: float = 30.0, max_tokens: int = 32,
                   servers: tuple[str, ...] = SERVERS, tick: Callable[[str], None] = lambda _: None
                   ) -> dict[str, Any]:
    """The load on `pllm serve` (the base model, then personalised) and on llama_cpp.server, each of `servers`
    that is asked for; p50/p99 per server."""
    model = resolve_model(settings)
    with tempfile.TemporaryDirectory(prefix="pllm-load-") as folder, contextlib.ExitStack() as stack:
        home = Path(folder) / "home"
        vault, _ = build_vault(home / "vault.db", PASSPHRASE)
        vault.close()
        env = _pllm_env(settings, home)
        targets: list[tuple[str, str, str]] = []  # (name, base URL, model asked for)
        if {"base", "personal"} & set(servers):
            port = free_port()
            url = stack.enter_context(serve_process([sys.executable, "-m", "pllm", "serve", "--port", str(port)], port,
                                              env, Path(folder) / "pllm-serve.log"))
            targets += [(name, url, served) for kind, name, served in (
                ("base", "pllm serve, base model", model.name), ("personal", "pllm serve, personalised", "pllm"))
                if kind in servers]
        if "reference" in servers:
            port = free_port()
            command = [sys.executable, "-c", REFERENCE_SERVER, "--model", str(model.path), "--host", "127.0.0.1",
                       "--port", str(port), "--n_threads", str(settings.threads), "--n_ctx", str(settings.n_ctx),
                       "--model_alias", model.name,
                       # Its default lets a new request interrupt the one streaming (every client but one would
                       # see its answer cut off): queue them instead, as pllm does.
                       "--interrupt_requests", "False"]
            url = stack.enter_context(serve_process(command, port, env, Path(folder) / "llama-cpp-server.log"))
            targets.append(("llama_cpp.server (llama-cpp-python)", url, model.name))
        outcomes = {name: Outcome(name) for name, _, _ in targets}
        for n in range(ROUNDS):
            for name, url, served in targets[n % len(targets):] + targets[:n % len(targets)]:
                drive(url, served, outcomes[name], clients=clients, seconds=seconds / ROUNDS,
                      max_tokens=max_tokens, tick=functools.partial(tick, name))
    outcomes = {name: outcomes[name] for name, _, _ in targets}
    rows = [o.summary() for o in outcomes.values()]
    return {"model": model.name, "clients": clients, "seconds": seconds, "max_tokens": max_tokens,
            "threads": settings.threads, "cpu": cpu_info().as_dict(), "rows": rows}
