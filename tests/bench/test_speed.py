"""`pllm bench`: the A/B comparison runs and reports consistent figures (speed itself is claimed in BENCHMARKS.md)."""

import json

from typer.testing import CliRunner

from pllm.bench.speed import run_speed_bench
from pllm.cli import app
from pllm.config import Settings


def test_bench_compares_pllm_with_raw_llama_cpp() -> None:
    ticks = []
    result = run_speed_bench(Settings(), reps=2, max_tokens=16, transformers=False, tick=lambda: ticks.append(1))
    assert len(ticks) == 6
    engines = [r["engine"] for r in result["rows"]]
    assert engines == ["pllm", "llama-cpp-python", "llama-cpp-python, pllm's file"]  # pllm runs its Q8_0 copy
    for row in result["rows"]:
        assert row["reps"] == 2
        assert row["decode_tokens_per_second"] > 0
        assert 0 < row["first_token_seconds"] < 10
    ours, raw, same_file = result["rows"]
    assert ours["tokens"] == same_file["tokens"]  # same file, same greedy answer, same length
    expected = ours["decode_tokens_per_second"] / raw["decode_tokens_per_second"]
    assert abs(result["decode_ratio"] - expected) < 0.01
    assert result["decode_ratio_same_file"] > 0


def test_bench_json_with_the_transformers_row() -> None:
    result = CliRunner().invoke(app, ["bench", "--reps", "1", "--max-tokens", "8", "--no-training", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["engine"] for r in data["rows"]][-1] == "transformers-fp32" and len(data["rows"]) == 4
    assert data["decode_ratio"] > 0
    assert data["rows"][-1]["decode_tokens_per_second"] > 0


def test_training_rows_ablate_each_technique_against_the_naive_loop() -> None:
    from pllm.bench.training import ABLATION, run_training_bench, standard_update

    update = standard_update(100)
    assert len(update.examples) == 100 and len(update.held_facts) == 8
    trained = {e.message_list()[-1]["content"] for e in update.examples}
    assert not any(q.message_list()[-1]["content"] in trained for q, _ in update.held_facts)  # never trained on
    result = run_training_bench(Settings(), items=16, steps=2, ablation_steps=1, reps=1, max_tokens=8)
    assert result["train_dtype"] in ("fp32", "bf16") and result["cpu"]["model"] and result["cpu"]["cores"] >= 1
    assert [r["mode"] for r in result["ablation"]] == list(ABLATION)
    assert all(r["dtype"] == "fp32" and r["peak_rss_mb"] > 300 for r in result["ablation"])  # own processes
    assert all(0 < r["peak_fraction"] < 2 for r in result["ablation"])
    ours = result["update"]
    assert ours["steps"] == 2 and ours["dtype"] == result["train_dtype"] and ours["lora_layers"] == 10
    assert result["updates"][0]["dtype"] == result["train_dtype"]  # the chosen precision first
    assert 0 <= ours["facts_recalled"] <= 8 and ours["general_before"] > 1
    assert result["step_speedup"] == round(result["ablation"][0]["seconds_per_step"] / ours["seconds_per_step"], 2)
    assert 1.0 < ours["adapter_mb"] < 3.0
    assert result["adapter_decode_ratio"] > 0
    merged = result["merged"]
    assert result["merged_decode_ratio"] > 0 and 0 <= merged["facts_recalled"] <= 8
    assert merged["model_mb"] > 100 and merged["merge_seconds"] > 0 and merged["load_seconds"] > 0


def test_the_latency_bench_times_a_personalised_request_against_raw() -> None:
    from pllm.bench.latency import run_latency_bench

    ticks = []
    result = run_latency_bench(Settings(), questions=3, tick=lambda: ticks.append(1))
    assert len(ticks) == 9 and result["questions"] == 3 and result["cpu"]["model"]
    rows = {r["engine"]: r for r in result["rows"]}
    assert set(rows) == {"raw, cold", "raw, warm", "pllm"} and all(r["requests"] == 3 for r in rows.values())
    # The whole-item prompt is the ~550-token request; pllm's own is shorter (excerpts) and its prefix is kept.
    assert rows["raw, cold"]["prompt_tokens"] > 400 and rows["pllm"]["prompt_tokens"] < rows["raw, cold"][
        "prompt_tokens"]
    assert result["prefix_hits"] == 2  # the first question builds the system turn's state, the next two reuse it
    assert result["ratio_to_raw_cold"]["raw, cold"] == 1.0
