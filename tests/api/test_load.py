"""The loopback load test: 20 concurrent streaming clients for 30 s against the real `pllm serve` (the real
packaged model, a real encrypted vault, personalised answers logged), and not one error. The comparison with
llama-cpp-python's own server under the same load is `pllm bench --load` (docs/BENCHMARKS.md)."""

from __future__ import annotations

import pytest

from pllm.bench.load import run_load_bench
from pllm.config import Settings


@pytest.mark.slow
def test_twenty_clients_for_thirty_seconds_get_every_answer() -> None:
    result = run_load_bench(Settings(), clients=20, seconds=30.0, max_tokens=16, servers=("personal",))
    (row,) = result["rows"]
    assert row["server"] == "pllm serve, personalised"
    assert row["errors"] == 0, row["error_examples"]
    assert row["requests"] >= 20  # every client was answered at least once
    assert 0 < row["first_token_p50"] <= row["latency_p50"] <= row["latency_p99"]
    assert row["tokens_per_second"] > 1
