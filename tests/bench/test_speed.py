"""`pllm bench`: the A/B comparison runs and reports consistent figures (speed itself is claimed in BENCHMARKS.md)."""

import json

from typer.testing import CliRunner

from pllm.bench.speed import run_speed_bench
from pllm.cli import app
from pllm.config import Settings


def test_bench_compares_pllm_with_raw_llama_cpp() -> None:
    ticks = []
    result = run_speed_bench(Settings(), reps=2, max_tokens=16, transformers=False, tick=lambda: ticks.append(1))
    assert len(ticks) == 4
    engines = [r["engine"] for r in result["rows"]]
    assert engines == ["pllm", "llama-cpp-python"]
    for row in result["rows"]:
        assert row["reps"] == 2
        assert row["decode_tokens_per_second"] > 0
        assert 0 < row["first_token_seconds"] < 10
    ours, raw = result["rows"]
    assert ours["tokens"] == raw["tokens"]  # same greedy answer, same length
    expected = ours["decode_tokens_per_second"] / raw["decode_tokens_per_second"]
    assert abs(result["decode_ratio"] - expected) < 0.01


def test_bench_json_with_the_transformers_row() -> None:
    result = CliRunner().invoke(app, ["bench", "--reps", "1", "--max-tokens", "8", "--no-training", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["engine"] for r in data["rows"]] == ["pllm", "llama-cpp-python", "transformers-fp32"]
    assert data["decode_ratio"] > 0
    assert data["rows"][2]["decode_tokens_per_second"] > 0


def test_training_rows_compare_our_loop_with_the_naive_one() -> None:
    from pllm.bench.training import run_training_bench, standard_update

    assert len(standard_update(100)) == 100
    result = run_training_bench(Settings(), items=16, steps=2, naive_steps=1, reps=1, max_tokens=8)
    ours, naive = result["update"], result["naive"]
    assert (ours["steps"], naive["steps"]) == (2, 1)
    assert ours["peak_rss_mb"] > 500 and naive["peak_rss_mb"] > 500  # each measured in its own process
    assert result["step_speedup"] == round(naive["seconds_per_step"] / ours["seconds_per_step"], 2)
    assert 1.0 < result["adapter_mb"] < 3.0
    assert result["adapter_decode_ratio"] > 0
