"""Bench commands: `pllm bench`. Thin: parse, run, print a table or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from pllm.bench.latency import QUESTIONS, run_latency_bench
from pllm.bench.speed import run_speed_bench, timed_engines
from pllm.config import Settings
from pllm.console import console, err_console, print_json, progress_bar, settings_of
from pllm.errors import UsageError
from pllm.expert.domains import packaged_domains
from pllm.lm.hardware import cpu_info

DEFAULT_METHODS = "stats,none,rag,profile"
# Settings that change what `cdcda` does: a report's command names those set apart from their defaults.
CDCDA_SETTINGS = ("augment_seeds", "augment_label_check", "augment_keep_per_seed", "augment_similarity_band",
                  "augment_length_band", "synthetic_ratio", "augment_step_factor")
# ... and what changes every per-user adapter (peft, rag+peft, continual, cdcda).
USER_ADAPTER_SETTINGS = ("user_step_factor",)


def bench(
    ctx: typer.Context,
    reps: int = typer.Option(5, "--reps", "-r", min=1, help="Timed repetitions per engine."),
    max_tokens: int = typer.Option(128, "--max-tokens", "-n", min=2, help="Tokens generated per repetition."),
    transformers: bool = typer.Option(True, "--transformers/--no-transformers",
                                      help="Add the transformers fp32 reference row."),
    training: bool = typer.Option(True, "--training/--no-training",
                                  help="Add the training rows: an ablation against the naive loop and the full "
                                  "100-item update (~5 min on 2 cores)."),
    train_items: int = typer.Option(100, "--train-items", min=8, help="Items in the standard update."),
    latency: bool = typer.Option(False, "--latency", help="Instead: a personalised request's first token, decode "
                                 "rate and end-to-end seconds against raw llama-cpp-python on the packaged file, "
                                 "given the whole-item prompt (~4 min)."),
    load: bool = typer.Option(False, "--load", help="Instead: concurrent streaming clients against `pllm serve` and "
                              "llama-cpp-python's server on loopback; p50/p99 latency and first token (~3 min)."),
    formats: bool = typer.Option(False, "--formats", help="Instead: the P-model in every format llama.cpp makes "
                                 "from it (prompt and decode speed, a personalised request end to end, size, "
                                 "quality against the packaged file); the fastest that keeps the quality becomes "
                                 "what `PLLM_MODEL_FORMAT=auto` serves on this CPU (~15 min with --reps 2)."),
    clients: int = typer.Option(20, "--clients", min=1, max=200, help="--load: concurrent clients."),
    seconds: float = typer.Option(30.0, "--seconds", min=1.0, max=600.0, help="--load: seconds of load per server."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Speed and memory: pllm against raw llama-cpp-python (and transformers), and LoRA training, same run."""
    from pllm.bench.training import run_training_bench  # lazy: brings the trainer's modules, ~15 ms

    settings = settings_of(ctx)
    if latency:
        _latency(settings, json_out)
        return
    if load:
        _load(settings, clients, seconds, json_out)
        return
    if formats:
        _formats(settings, reps, json_out)
        return
    total = reps * timed_engines(settings, transformers=transformers)
    progress = progress_bar("bench")
    with progress:
        task = progress.add_task("bench", total=total)
        result = run_speed_bench(settings, reps=reps, max_tokens=max_tokens, transformers=transformers,
                                 tick=lambda: progress.advance(task))
    if training:
        with err_console.status("training bench") as status:
            result["training"] = run_training_bench(
                settings, items=train_items, reps=reps,
                tick=lambda label: status.update(f"training bench: {label}") if err_console.is_terminal
                else err_console.print(f"training bench: {label}"))
    if _show(result, json_out, f"{result['model']}, {result['threads']} threads, {result['reps']} reps, "
             f"{result['prompt_tokens']} prompt tokens, up to {result['max_tokens']} generated",
             ("engine", "decode tok/s", "first token s", "tok/s incl. prompt", "tokens"),
             [(str(row["engine"]), f"{row['decode_tokens_per_second']:.1f}", f"{row['first_token_seconds']:.3f}",
               f"{row['tokens_per_second']:.1f}", str(row["tokens"])) for row in result["rows"]]):
        return
    console.print(f"decode ratio pllm / llama-cpp-python: {result['decode_ratio']:.3f}   "
                  f"first-token ratio: {result['first_token_ratio']:.3f}")
    if training:
        _print_training(result["training"])


def _show(result: dict[str, Any], json_out: bool, title: str, columns: tuple[str, ...],
          rows: list[tuple[str, ...]]) -> bool:
    """Print the figures as JSON, or as a table (the first column names the row); True when it was JSON."""
    if json_out:
        print_json(result)
        return True
    table = Table(title=title)
    for n, col in enumerate(columns):
        table.add_column(col, justify="left" if n == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return False


def _latency(settings: Settings, json_out: bool) -> None:
    progress = progress_bar("latency")
    with progress:
        task = progress.add_task("latency", total=QUESTIONS * 3)
        result = run_latency_bench(settings, tick=lambda: progress.advance(task))
    if _show(result, json_out, f"a personalised request, {result['model']}, {result['threads']} threads, "
             f"{result['questions']} questions, k={result['k']}",
             ("engine", "first token s (median)", "min .. max", "decode tok/s", "32 / 256 tokens s", "prompt tokens",
              "x raw, cold"),
             [(row["engine"], f"{row['first_token_seconds']:.3f}",
               f"{row['first_token_min']:.2f} .. {row['first_token_max']:.2f}",
               f"{row['decode_tokens_per_second']:.1f}",
               f"{row['end_to_end_32_seconds'] or 0:.2f} / {row['end_to_end_256_seconds'] or 0:.2f}",
               str(row["prompt_tokens"]), f"{result['ratio_to_raw_cold'][row['engine']]:.3f}")
              for row in result["rows"]]):
        return
    console.print(f"decode ratio pllm / raw llama-cpp-python on the packaged file: {result['decode_ratio_to_raw']}")


def _formats(settings: Settings, reps: int, json_out: bool) -> None:
    from pllm.bench.formats import PROMPT_LENGTHS, run_formats_bench, timed_formats

    progress = progress_bar("formats")
    with progress:
        task = progress.add_task("formats", total=timed_formats(settings, reps))
        result = run_formats_bench(settings, reps=reps, tick=lambda: progress.advance(task))
    if _show(result, json_out, f"{result['model']} by format, {result['cpu']}, {result['threads']} threads, "
             f"{result['reps']} reps; a personalised request of {result['rows'][0]['request_prompt_tokens']} tokens",
             ("format", "MB", "prompt tok/s 64/256/512", "first token s", "decode tok/s", "32 / 256 tokens s",
              "perplexity x [95%]", "same answers"),
             [(row["format"] + (" repacked" if row["repacked"] else ""), f"{row['megabytes']:.0f}",
               " / ".join(f"{row[f'prefill_{n}_tokens_per_second']:.0f}" for n in PROMPT_LENGTHS),
               f"{row['first_token_seconds']:.3f}", f"{row['decode_tokens_per_second']:.1f}",
               f"{row['end_to_end_32_seconds']:.2f} / {row['end_to_end_256_seconds']:.2f}",
               "{:.3f} [{:.3f}, {:.3f}]".format(*row["perplexity_ratio"]),
               f"{row['same_answers']}/{result['questions']}") for row in result["rows"]]):
        return
    choice = result["choice"]
    console.print(f"served on this CPU: {choice['format']}{' repacked' if choice['repacked'] else ''} "
                  f"({choice['why']})")


def _load(settings: Settings, clients: int, seconds: float, json_out: bool) -> None:
    from pllm.bench.load import run_load_bench  # heavy: imports fastapi

    with err_console.status("load bench") as status:
        result = run_load_bench(settings, clients=clients, seconds=seconds,
                                tick=lambda name: status.update(f"load bench: {name}"))
    _show(result, json_out, f"{clients} streaming clients for {seconds:.0f} s each, {result['model']}, "
          f"up to {result['max_tokens']} tokens per answer",
          ("server", "requests", "errors", "latency p50 / p99 s", "first token p50 / p99 s", "tok/s served"),
          [(row["server"], str(row["requests"]), str(row["errors"]), f"{row['latency_p50']} / {row['latency_p99']}",
            f"{row['first_token_p50']} / {row['first_token_p99']}", f"{row['tokens_per_second']:.1f}")
           for row in result["rows"]])


def _print_training(t: dict[str, object]) -> None:
    cpu = t["cpu"]
    update = t["update"]
    assert isinstance(cpu, dict) and isinstance(update, dict)
    console.print(f"training on {cpu['model']} ({cpu['cores']} cores; {' '.join(cpu['flags'])}): "
                  f"{t['train_dtype']} ({t['train_dtype_reason']})")
    rows = Table(title=f"LoRA training: ablation on a {update['items']}-item update, fp32, same first steps")
    for col in ("loop", "LoRA layers", "steps", "s / step", "x naive", "peak RSS MB", "GFLOP/s", "of peak"):
        rows.add_column(col, justify="left" if col == "loop" else "right")
    ablation = t["ablation"]
    assert isinstance(ablation, list)
    naive = ablation[0]["seconds_per_step"]
    for r in ablation:
        rows.add_row(r["mode"], str(r["lora_layers"] or "all"), str(r["steps"]), f"{r['seconds_per_step']:.2f}",
                     f"{naive / r['seconds_per_step']:.2f}", f"{r['peak_rss_mb']:.0f}", f"{r['gflops']:.0f}",
                     f"{r['peak_fraction']:.0%}")
    console.print(rows)
    full = Table(title="the full update, as `pllm adapt` runs it")
    for col in ("dtype", "steps", "frozen pass s", "training s", "peak RSS MB", "facts (held-out phrasing)",
                "general ppl after/before"):
        full.add_column(col, justify="right")
    updates = t["updates"]
    assert isinstance(updates, list)
    for r in updates:
        full.add_row(r["dtype"], str(r["steps"]), f"{r['prepare_seconds']:.1f}", f"{r['seconds']:.1f}",
                     f"{r['peak_rss_mb']:.0f}", f"{r['facts_recalled']}/{t['facts_held_out']} "
                     f"(base {t['facts_recalled_base']})", f"{r['general_after'] / r['general_before']:.3f}")
    console.print(full)
    d, m = t["decode_tokens_per_second"], t["merged"]
    assert isinstance(d, dict) and isinstance(m, dict)
    console.print(f"update {t['update_speedup']:.2f}x faster than the naive loop's "
                  f"{t['naive_update_seconds_projected']} s (projected from its measured steps); adapter "
                  f"{update['adapter_mb']:.2f} MB; decode with / without adapter {d['with_adapter']:.1f} / "
                  f"{d['without_adapter']:.1f} tok/s = {t['adapter_decode_ratio']:.3f}\n"
                  f"merged into a copy of the model (as pllm serve runs the active adapter): decode "
                  f"{d['with_adapter_merged']:.1f} tok/s = {t['merged_decode_ratio']:.3f} of the base; facts "
                  f"{m['facts_recalled']}/{t['facts_held_out']} (applied: {m['facts_recalled_applied']}); merge "
                  f"{m['merge_seconds']:.1f} s, load {m['load_seconds']:.2f} s, {m['model_mb']:.0f} MB")


def eval_command(
    ctx: typer.Context,
    task_name: str = typer.Option(..., "--task", help="lamp1, lamp2, lamp3, lamp4, lamp5, lamp7, movielens-rating, "
                                  "movielens-tag, memory (a long chat history in LongMemEval's or LoCoMo's format, "
                                  "--data FILE), "
                                  "privacy (redaction and a leak test against a local T-tier), "
                                  "routing (the router on personal, domain and general questions), "
                                  "experts (every registered expert on every domain's exam), "
                                  "cloud (the T-models, named by --methods, on general questions), "
                                  "teachers (each domain's expert distilled from each T-model named by --methods), "
                                  "tools (json_schema answers and function calls through pllm serve; --data: labelled "
                                  "questions), "
                                  "speech (Whisper's word error rate on rendered sentences; --data: one a line)."),
    data: Path = typer.Option(None, "--data", help="A folder of LaMP files (or the MovieLens folder)."),
    synthetic: str = typer.Option(None, "--synthetic", help="Synthetic users: small, medium or large."),
    methods: str = typer.Option(DEFAULT_METHODS, "--methods",
                                help="Comma-separated: stats, majority, none, rag, profile, task, task+user, "
                                "user-head, router, task-lora, peft, rag+peft, cdcda, continual (memory: bm25, pllm, "
                                "hybrid, answers; all by default; cloud: T-model names)."),
    users: int = typer.Option(None, "--users", min=1, help="Evaluate this many users (sampled with --seed)."),
    seed: int = typer.Option(0, "--seed", help="Seed for synthetic users and user sampling."),
    history: str = typer.Option(None, "--history", help="Low-data users: each evaluated user keeps only their N most "
                                "recent profile items, for every method (CDCDA's setting); a list (0,1,2,4,8) "
                                "sweeps the sizes, each method against the task model."),
    per_seed: int = typer.Option(None, "--per-seed", min=1, max=16,
                                 help="cdcda: new items asked of the T-tier per seed item (PLLM_AUGMENT_PER_SEED)."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    report: Path = typer.Option(None, "--report", help="Write report.md, plots and predictions to this folder."),
) -> None:
    """Compare personalization methods on LaMP-format, synthetic or MovieLens tasks."""
    # heavy: the runner and the report import fastapi and cryptography; the tasks are ~10 ms more
    from pllm.bench.data import TASK_NAMES, low_data, questions_for
    from pllm.bench.report import gain_text, improvement_text, ready_folder, with_interval, write_report
    from pllm.bench.runner import run_eval
    from pllm.bench.sweep import history_sizes
    from pllm.bench.tasks.base import get_task

    if report is not None:
        ready_folder(report)
    if task_name == "memory":
        _memory(ctx, data, methods, json_out, report)
        return
    if task_name == "privacy":
        _privacy(ctx, data, json_out, report)
        return
    if task_name == "routing":
        _routing(ctx, json_out, report)
        return
    if task_name == "experts":
        _experts(ctx, json_out)
        return
    if task_name == "teachers":
        _teachers(ctx, methods if methods != DEFAULT_METHODS else "gemma-3-270m,qwen2.5-1.5b", json_out, report)
        return
    if task_name == "tools":
        _tools(ctx, data, json_out, report)
        return
    if task_name == "speech":
        _speech(ctx, data, json_out, report)
        return
    if task_name == "cloud":
        _cloud(ctx, methods if methods != DEFAULT_METHODS else "gemma-3-270m,qwen2.5-1.5b", json_out, report)
        return
    if task_name not in TASK_NAMES:
        raise UsageError(f"unknown task {task_name!r}; choose from {', '.join(TASK_NAMES)}, memory, privacy, "
                         "routing, experts, cloud, teachers, tools, speech")
    settings = settings_of(ctx)
    if per_seed is not None:
        settings = settings.model_copy(update={"augment_per_seed": per_seed})
    task = get_task(task_name)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    eval_data = questions_for(task, settings, data=data, synthetic=synthetic, users=users, seed=seed)
    sizes = history_sizes(history)
    source = f"--data {data}" if data else f"--synthetic {synthetic}" if synthetic else ""
    cdcda_settings: tuple[str, ...] = ((*CDCDA_SETTINGS, *(("augment_per_seed",) if per_seed is None else ()))
                      if "cdcda" in names else ())
    cdcda_settings += USER_ADAPTER_SETTINGS if {"peft", "rag+peft", "continual", "cdcda"} & set(names) else ()
    command = " ".join(filter(None, [*_changed_env(settings, cdcda_settings),
                                     "pllm eval --task", task_name, source, f"--methods {','.join(names)}",
                                     f"--users {users}" if users else "", f"--seed {seed}",
                                     f"--history {history}" if history else "",
                                     f"--per-seed {per_seed}" if per_seed else "",
                                     f"--report {report}" if report else ""]))
    if sizes is not None and len(sizes) > 1:
        _sweep(task, eval_data, sizes, names, settings, seed=seed, json_out=json_out, report=report, command=command)
        return
    if sizes is not None:
        eval_data = low_data(eval_data, sizes[0])
    progress = progress_bar()
    bars: dict[str, object] = {}

    def tick(method: str, done: int, total: int) -> None:
        if method not in bars:
            bars[method] = progress.add_task(f"eval {task_name} {method}", total=total)
        progress.update(bars[method], completed=done)  # type: ignore[arg-type]

    with progress:
        result = run_eval(task, eval_data, names, settings, seed=seed, tick=tick)
    if report is not None:
        write_report(result, report, command=command)
    if json_out:
        print_json(result.as_json())
        return
    table = Table(title=f"{task_name}: {result.as_json()['users']} users, {len(result.questions)} queries "
                        "(95% bootstrap intervals)")
    metrics = list(result.methods[0].metrics)
    for col in ("method", *metrics, f"gain ({result.primary})", "vs none", "s / user"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for m in result.methods:
        table.add_row(m.name, *[with_interval(m.metrics[k], m.intervals[k]) for k in metrics],
                      gain_text(m.relative_gain.get(result.primary)),
                      "" if m is result.methods[0] else improvement_text(*m.improvement), f"{m.seconds_per_user:.2f}")
    console.print(table)
    console.print(result.protocol)
    if report is not None:
        console.print(f"report: {report / 'report.md'}")


def _sweep(task: Any, data: Any, sizes: list[int], names: list[str], settings: Settings, *, seed: int,
           json_out: bool, report: Path | None, command: str) -> None:
    """`pllm eval --history 0,1,2,4,8`: every method at every size, against the task model."""
    from pllm.bench.sweep import run_history_sweep, sweep_table, write_sweep_report

    with progress_bar() as progress:
        bars: dict[str, Any] = {}

        def tick(what: str, done: int, total: int) -> None:
            if what not in bars:
                bars[what] = progress.add_task(f"eval {what}", total=total)
            progress.update(bars[what], completed=done)

        result = run_history_sweep(task, data, sizes, names, settings, seed=seed, tick=tick)
    if report is not None:
        cpu = cpu_info()
        write_sweep_report(result, report, command=command, machine=f"Measured on {cpu.model} ({cpu.cores} cores).")
    if json_out:
        print_json(result)
        return
    for line in sweep_table(result):
        console.print(line, markup=False, highlight=False)
    if report is not None:
        console.print(f"report: {report / 'report.md'}")


def _changed_env(settings: Settings, names: Sequence[str]) -> list[str]:
    """`PLLM_NAME=value` for each of `names` whose value is not its default (the form a user reruns it with)."""
    fields = type(settings).model_fields
    return [f"PLLM_{name.upper()}={_env_value(getattr(settings, name))}" for name in names
            if getattr(settings, name) != fields[name].default]


def _env_value(value: object) -> str:
    """A setting as its environment variable takes it: a pair as quoted JSON ('[0.1, 0.99]')."""
    return f"'{json.dumps(list(value))}'" if isinstance(value, tuple) else str(value)


def _cloud(ctx: typer.Context, models: str, json_out: bool, report: Path | None) -> None:
    """`pllm eval --task cloud`: the T-models (--methods names them) on the routing set's general questions."""
    # heavy: imports fastapi and cryptography
    from pllm.bench.cloud_answers import compare_t_models, general_questions, write_cloud_report

    names = [m.strip() for m in models.split(",") if m.strip()]
    with progress_bar() as progress:
        bar = progress.add_task("T-models", total=len(names) * len(general_questions()))
        result = compare_t_models(settings_of(ctx), names, tick=lambda: progress.advance(bar))
    if report is not None:
        write_cloud_report(result, report, command=f"pllm eval --task cloud --methods {','.join(names)} "
                                                   f"--report {report}")
    if json_out:
        print_json(result)
        return
    for name, row in result["models"].items():
        console.print(f"{name}: ROUGE-L {row['rougeL']:.3f} {row['rougeL_interval']}, "
                      f"{row['median_seconds']} s per answer")
    if "difference" in result:
        console.print(f"paired difference ({result['difference']['of']}): {result['difference']['interval']}")


def _routing(ctx: typer.Context, json_out: bool, report: Path | None) -> None:
    """`pllm eval --task routing`: where the router sends each question, and what that does to the answers."""
    # heavy: these import fastapi and cryptography
    from pllm.bench.report import improvement_text, with_interval
    from pllm.bench.routing import run_routing, write_routing_report

    settings = settings_of(ctx)
    with progress_bar() as progress:
        bar = progress.add_task("routing", total=None)
        result = run_routing(settings, tick=lambda: progress.advance(bar),
                             on_total=lambda n: progress.update(bar, total=n))
    if report is not None:
        write_routing_report(result, report, command=f"pllm eval --task routing --report {report}")
    if json_out:
        print_json({k: v for k, v in result.items() if k != "rows"})
        return
    table = Table(title="routing (95% bootstrap intervals; ROUGE-L against the references)")
    for col in ("category", "questions", "correct route", "routes", "ROUGE-L routed", "all local", "gain",
                "left the device"):
        table.add_column(col)
    for name, v in result["categories"].items():
        table.add_row(name, str(v["questions"]), with_interval(v["correct_route"], v["correct_route_interval"]),
                      ", ".join(f"{k} {n}" for k, n in v["routes"].items()), f"{v['rougeL_routed']:.3f}",
                      f"{v['rougeL_all_local']:.3f}", improvement_text(*v["rougeL_gain_interval"]),
                      str(v["left_the_device"]))
    console.print(table)
    console.print("latency per route (median): " + ", ".join(f"{k} {v['median_seconds']} s"
                                                             for k, v in result["latency"].items()))
    if report is not None:
        console.print(f"report: {report / 'report.md'}")


def _teachers(ctx: typer.Context, models: str, json_out: bool, report: Path | None) -> None:
    """`pllm eval --task teachers`: every packaged domain's expert distilled from each T-model, paired by question."""
    import json

    from pllm.bench.experts import compare_teachers  # heavy: imports fastapi

    names = [m.strip() for m in models.split(",") if m.strip()]
    with err_console.status("teachers") as status:
        result = compare_teachers(settings_of(ctx), names, sorted(packaged_domains()),
                                  tick=lambda label: status.update(f"teachers: {label}") if err_console.is_terminal
                                  else err_console.print(f"teachers: {label}"))
    if report is not None:
        report.mkdir(parents=True, exist_ok=True)
        (report / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    if json_out:
        print_json(result)
        return
    for domain, row in result["domains"].items():
        exams = ", ".join(f"{t} {v['exam']:.3f}" for t, v in row["teachers"].items())
        console.print(f"{domain}: {exams}; {row['difference']['of']} {row['difference']['interval']}")


def _experts(ctx: typer.Context, json_out: bool) -> None:
    """`pllm eval --task experts`: each expert on each exam; own-domain gains beside any adapter's."""
    from pllm.bench.experts import run_expert_matrix  # heavy: imports fastapi
    from pllm.bench.report import improvement_text  # heavy: imports fastapi and cryptography

    result = run_expert_matrix(settings_of(ctx))
    if json_out:
        print_json(result)
        return
    names = result["experts"]
    table = Table(title="exam scores (mean log-probability per token of the reference answers; 95% intervals)")
    for col in ("exam", "base", *names, "own - base", "own - best other"):
        table.add_column(col)
    for exam, v in result["exams"].items():
        table.add_row(exam, f"{v['scores']['base']:.3f}", *[f"{v['scores'][n]:.3f}" for n in names],
                      improvement_text(*v["own_over_base"]),
                      improvement_text(*v["own_over_best_other"]) + f" ({v['best_other']})"
                      if "best_other" in v else "")
    console.print(table)


def _memory(ctx: typer.Context, data: Path | None, methods: str, json_out: bool, report: Path | None) -> None:
    """`pllm eval --task memory`: retrieval recall and answers over a long history, beside plain BM25."""
    # heavy: these import fastapi and cryptography
    from pllm.bench.memory import METHODS, load_histories, run_memory, write_memory_report
    from pllm.bench.report import improvement_text, with_interval

    if data is None:
        raise UsageError("the memory task needs --data FILE: a JSON file in LongMemEval's, LoCoMo's or "
                         "RealMem's format, or a folder of BEAM chats")
    asked = [m.strip() for m in methods.split(",") if m.strip()]
    if methods == DEFAULT_METHODS:  # the LaMP default means nothing here: everything
        asked = [*METHODS, "answers"]
    unknown = [m for m in asked if m not in (*METHODS, "answers")]
    if unknown:
        raise UsageError(f"unknown memory method {', '.join(unknown)}; choose from {', '.join(METHODS)}, answers")
    answer = "answers" in asked
    histories = load_histories(data)
    settings = settings_of(ctx)
    progress = progress_bar()
    with progress:
        bar = progress.add_task("memory", total=sum(len(h.questions) for h in histories))
        result = run_memory(histories, settings, methods=[m for m in asked if m != "answers"], answer=answer,
                            tick=lambda done, _: progress.update(bar, completed=done))
    if report is not None:
        command = f"pllm eval --task memory --data {data} --methods {','.join(asked)} --report {report}"
        write_memory_report(result, report, command=command)
    if json_out:
        print_json(result.as_json())
        return
    table = Table(title=f"memory: {len(result.results)} questions (95% bootstrap intervals)")
    for col in ("method", "recall@3", "recall@10", "recall@3 vs bm25"):
        table.add_column(col, justify="left" if col == "method" else "right")
    rows = result.table()
    for m in result.methods:
        r = rows[m]
        table.add_row(m, *[with_interval(r[f"recall@{k}"], r[f"recall@{k}_interval"]) for k in (3, 10)],
                      "" if m == "bm25" else improvement_text(*r["recall@3_vs_bm25"]))
    console.print(table)
    if result.answered:
        p = rows["pllm"]
        console.print(f"answers: token F1 {p['answer_f1']:.3f}, {p['seconds_per_question']:.1f} s per question")


def _tools(ctx: typer.Context, data: Path | None, json_out: bool, report: Path | None) -> None:
    """`pllm eval --task tools`: json_schema answers and function calls (auto, required) through pllm serve."""
    from pllm.bench.tools import DEFAULT_QUESTIONS, run_tools, write_tools_report  # heavy: imports fastapi

    with err_console.status("tools") as status:
        result = run_tools(settings_of(ctx), data or DEFAULT_QUESTIONS,
                           tick=lambda label: status.update(f"tools: {label}") if err_console.is_terminal
                           else err_console.print(f"tools: {label}"))
    if report is not None:
        cpu = cpu_info()
        command = f"pllm eval --task tools{f' --data {data}' if data else ''} --report {report}"
        write_tools_report(result, report, command=command, machine=f"{cpu.model} ({cpu.cores} cores)")
    if json_out:
        print_json(result)
        return
    auto, req, js = result["auto"], result["required"], result["json_schema"]
    console.print(f"json_schema: {js['valid']} of {js['of']} valid; required: {req['valid']} of {req['of']} valid "
                  f"calls ({req['right_function']} the right function)")
    for name in ("false_call", "missed_call", "wrong_function"):
        r = auto[name]
        console.print(f"auto {name.replace('_', ' ')}: {r['rate']:.3f} [{r['interval'][0]:.3f}, "
                      f"{r['interval'][1]:.3f}] of {r['of']}")
    console.print(f"auto threshold {auto['threshold']}; this set's best {auto['best_threshold_on_this_set']}")


def _speech(ctx: typer.Context, data: Path | None, json_out: bool, report: Path | None) -> None:
    """`pllm eval --task speech`: Whisper base's word error rate on sentences espeak-ng renders."""
    from pllm.bench.speech import DEFAULT_SENTENCES, load_sentences, run_speech, write_speech_report

    sentences = data or DEFAULT_SENTENCES
    with progress_bar() as progress:
        bar = progress.add_task("speech", total=len(load_sentences(sentences)))
        result = run_speech(settings_of(ctx), sentences, tick=lambda: progress.advance(bar))
    if report is not None:
        cpu = cpu_info()
        write_speech_report(result, report, command=f"pllm eval --task speech{f' --data {data}' if data else ''} "
                            f"--report {report}", machine=f"{cpu.model} ({cpu.cores} cores)")
    if json_out:
        print_json({k: v for k, v in result.items() if k != "rows"})
        return
    low, high = result["wer_interval"]
    console.print(f"WER {result['wer']:.3f} [{low:.3f}, {high:.3f}] over {result['sentences']} sentences "
                  f"({result['words']} words; {result['exact']} exact); real-time factor "
                  f"{result['real_time_factor']:.2f} on {result['threads']} threads")


def _privacy(ctx: typer.Context, data: Path | None, json_out: bool, report: Path | None) -> None:
    """`pllm eval --task privacy`: redaction recall and precision, and the leak test against a loopback T-tier."""
    # heavy: these import fastapi and cryptography
    from pllm.bench.privacy import DEFAULT_DATA, load_sentences, run_privacy, write_privacy_report
    from pllm.bench.report import with_interval

    sentences = load_sentences(data or DEFAULT_DATA)
    progress = progress_bar()
    with progress:
        bar = progress.add_task("privacy leak test", total=None)
        result = run_privacy(sentences, settings_of(ctx),
                             tick=lambda done, total: progress.update(bar, completed=done, total=total))
    if report is not None:
        cpu = cpu_info()
        command = f"pllm eval --task privacy{f' --data {data}' if data else ''} --report {report}"
        if settings_of(ctx).gate_model != "auto":
            command = f"PLLM_GATE_MODEL={settings_of(ctx).gate_model} {command}"
        write_privacy_report(result, report, command=command, machine=f"{cpu.model} ({cpu.cores} cores)")
    if json_out:
        print_json(result.as_json())
        return
    table = Table(title=f"privacy: {result.sentences} labelled sentences, {result.alone.gold} personal values")
    for col in ("gate", "recall", "precision"):
        table.add_column(col, justify="left" if col == "gate" else "right")
    for name, score in (("patterns + NER", result.alone), ("with the vault", result.with_vault)):
        table.add_row(name, with_interval(score.recall, score.recall_interval),
                      with_interval(score.precision, score.precision_interval))
    console.print(table)
    if result.leak is not None:
        leak = result.leak
        console.print(f"leak test: {len(leak.leaked)} of {leak.canaries} canaries in {leak.requests} request bodies; "
                      f"egress log: {leak.logged} requests")


def register(app: typer.Typer) -> None:
    app.command()(bench)
    app.command("eval")(eval_command)
