"""`pllm bench`: the A/B comparison runs and reports consistent figures (speed itself is claimed in BENCHMARKS.md)."""

import json
from pathlib import Path

import pytest
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
    # the rows are rounded to 4 places before the ratio is read back from them
    step_ratio = result["ablation"][0]["seconds_per_step"] / ours["seconds_per_step"]
    assert abs(result["step_speedup"] - step_ratio) <= 0.011
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
    for row in rows.values():  # each request also decodes: its rate, and a short and a long answer end to end
        assert row["decode_tokens_per_second"] > 0
        assert row["end_to_end_256_seconds"] > row["end_to_end_32_seconds"] > row["first_token_seconds"]
    ratio = rows["pllm"]["decode_tokens_per_second"] / rows["raw, cold"]["decode_tokens_per_second"]
    assert result["decode_ratio_to_raw"] == round(ratio, 3)


def test_the_formats_bench_measures_each_format_and_auto_serves_its_choice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pllm.bench.formats import choose_format, run_formats_bench
    from pllm.lm.hardware import repack_safe
    from pllm.lm.models import format_choice_path, gguf_file_type, runtime_model

    monkeypatch.setenv("PLLM_CACHE_DIR", str(tmp_path / "cache"))  # the choice it writes is this test's only
    monkeypatch.delenv("PLLM_MODEL_FORMAT")  # the default, auto, serves the choice
    settings = Settings()
    result = run_formats_bench(settings, reps=1, formats=("Q4_1", "Q4_0", "Q8_0"), questions=3, prompt_lengths=(64,),
                               decode_tokens=16)
    rows = {(r["format"], r["repacked"]): r for r in result["rows"]}
    assert len(rows) == (6 if repack_safe() else 3) + 1  # and the packaged file with its Q8_0 copy's prompts
    packaged = rows["Q4_1", False]
    assert packaged["perplexity_ratio"] == [1.0, 1.0, 1.0] and packaged["same_answers"] == 3
    assert rows["Q8_0", False]["megabytes"] > packaged["megabytes"] > rows["Q4_0", False]["megabytes"]
    for row in rows.values():
        assert row["decode_tokens_per_second"] > 0 and row["prefill_64_tokens_per_second"] > 0
        assert 250 <= row["request_prompt_tokens"] <= 350
        assert row["end_to_end_256_seconds"] > row["end_to_end_32_seconds"] > row["first_token_seconds"]
    # Q4_0 is made from Q4_1's values on a coarser grid: its perplexity moves, Q8_0's barely does
    assert abs(rows["Q8_0", False]["perplexity_ratio"][0] - 1) < abs(rows["Q4_0", False]["perplexity_ratio"][0] - 1)
    both = rows["packaged+Q8_0", False]  # the answers are the packaged file's, read after the copy's prompt
    assert abs(both["perplexity_ratio"][0] - 1) < abs(rows["Q4_0", False]["perplexity_ratio"][0] - 1)
    assert both["megabytes"] == packaged["megabytes"]
    choice = result["choice"]
    assert choice == choose_format(result["rows"], "Q4_1")
    served = runtime_model(Settings())
    assert json.loads(format_choice_path(settings).read_text())["choice"] == choice
    assert gguf_file_type(served.path) == {"Q4_1": 3, "Q4_0": 2, "Q8_0": 7, "packaged+Q8_0": 3}[choice["format"]]
    assert (served.prefill is not None) == (choice["format"] == "packaged+Q8_0")
    assert served.repacked == choice["repacked"] and "chosen by `pllm bench --formats`" in served.source


def test_the_chosen_format_is_the_fastest_that_keeps_the_packaged_quality_and_decode() -> None:
    from pllm.bench.formats import choose_format

    def row(fmt: str, seconds: float, ratio: list[float], decode: float = 100.0,
            repacked: bool = False) -> dict[str, object]:
        return {"format": fmt, "repacked": repacked, "end_to_end_32_seconds": seconds,
                "end_to_end_256_seconds": seconds * 4, "perplexity_ratio": ratio, "decode_tokens_per_second": decode}

    rows = [row("Q4_1", 3.0, [1.0, 1.0, 1.0]), row("Q8_0", 2.5, [1.006, 1.002, 1.011]),
            row("Q4_0", 1.5, [1.08, 1.05, 1.11]), row("Q5_0", 2.0, [1.004, 0.999, 1.012])]
    assert choose_format(rows, "Q4_1")["format"] == "Q5_0"  # its whole interval under 1.02: kept, faster than Q8_0
    rows[3]["perplexity_ratio"] = [1.01, 0.99, 1.10]
    assert choose_format(rows, "Q4_1")["format"] == "Q8_0"  # a wide, noisy interval does not pass
    rows[3]["perplexity_ratio"] = [1.03, 1.025, 1.04]
    assert choose_format(rows, "Q4_1")["format"] == "Q8_0"  # the faster ones lose quality
    rows[1]["decode_tokens_per_second"] = 90.0
    assert choose_format(rows, "Q4_1")["format"] == "Q4_1"  # Q8_0 answers sooner but decodes at 0.9x: not served
    rows.append(row("Q4_1", 2.9, [1.0, 1.0, 1.0], repacked=True))
    assert choose_format(rows, "Q4_1")["repacked"] is False  # faster by noise only: plain buffers
    rows.append(row("Q8_0", 1.0, [1.006, 1.002, 1.011], decode=100.0, repacked=True))
    assert choose_format(rows, "Q4_1") == {**choose_format(rows, "Q4_1"), "format": "Q8_0", "repacked": True}
    rows[1]["decode_tokens_per_second"], rows[-1]["decode_tokens_per_second"] = 85.0, 85.0  # the Xeon's Q8_0
    rows.append(row("packaged+Q8_0", 2.6, [1.003, 1.001, 1.006]))  # Q8_0's prompts, the packaged file's decode
    assert choose_format(rows, "Q4_1")["format"] == "packaged+Q8_0"
