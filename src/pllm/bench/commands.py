"""Bench commands: `pllm bench`. Thin: parse, run, print a table or JSON."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from pllm.console import console, err_console, print_json, progress_bar, settings_of


def bench(
    ctx: typer.Context,
    reps: int = typer.Option(5, "--reps", "-r", min=1, help="Timed repetitions per engine."),
    max_tokens: int = typer.Option(128, "--max-tokens", "-n", min=2, help="Tokens generated per repetition."),
    transformers: bool = typer.Option(True, "--transformers/--no-transformers",
                                      help="Add the transformers fp32 reference row."),
    training: bool = typer.Option(True, "--training/--no-training",
                                  help="Add the training rows: a 100-item update against the naive loop (~3 min)."),
    train_items: int = typer.Option(100, "--train-items", min=8, help="Items in the standard update."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Speed and memory: pllm against raw llama-cpp-python (and transformers), and LoRA training, same run."""
    from pllm.bench.speed import run_speed_bench
    from pllm.bench.training import run_training_bench

    settings = settings_of(ctx)
    total = reps * (3 if transformers else 2)
    progress = progress_bar("bench")
    with progress:
        task = progress.add_task("bench", total=total)
        result = run_speed_bench(settings, reps=reps, max_tokens=max_tokens, transformers=transformers,
                                 tick=lambda: progress.advance(task))
    if training:
        with err_console.status("training bench: a standard update, then the naive loop"):
            result["training"] = run_training_bench(settings, items=train_items, reps=reps)
    if json_out:
        print_json(result)
        return
    table = Table(title=f"{result['model']}, {result['threads']} threads, {result['reps']} reps, "
                        f"{result['prompt_tokens']} prompt tokens, up to {result['max_tokens']} generated")
    for col in ("engine", "decode tok/s", "first token s", "tok/s incl. prompt", "tokens"):
        table.add_column(col, justify="right" if col != "engine" else "left")
    for row in result["rows"]:
        table.add_row(str(row["engine"]), f"{row['decode_tokens_per_second']:.1f}",
                      f"{row['first_token_seconds']:.3f}", f"{row['tokens_per_second']:.1f}", str(row["tokens"]))
    console.print(table)
    console.print(f"decode ratio pllm / llama-cpp-python: {result['decode_ratio']:.3f}   "
                  f"first-token ratio: {result['first_token_ratio']:.3f}")
    if training:
        t = result["training"]
        rows = Table(title=f"LoRA training: a {t['update']['items']}-item update")
        for col in ("loop", "steps", "s / step", "train tok/s", "peak RSS MB", "total s"):
            rows.add_column(col, justify="left" if col == "loop" else "right")
        for name, r in (("pllm (bf16, per-batch padding)", t["update"]), ("naive (fp32, padded to 128)", t["naive"])):
            rows.add_row(name, str(r["steps"]), f"{r['seconds_per_step']:.2f}", f"{r['train_tokens_per_second']:.0f}",
                         f"{r['peak_rss_mb']:.0f}", f"{r['seconds']:.1f}")
        console.print(rows)
        d = t["decode_tokens_per_second"]
        console.print(f"step speed-up over naive: {t['step_speedup']:.2f}x   adapter: {t['adapter_mb']:.2f} MB   "
                      f"decode with / without adapter: {d['with_adapter']:.1f} / {d['without_adapter']:.1f} tok/s "
                      f"= {t['adapter_decode_ratio']:.3f}")


def eval_command(
    ctx: typer.Context,
    task_name: str = typer.Option(..., "--task", help="lamp1, lamp2, lamp3, lamp4, lamp5, lamp7, movielens-rating, "
                                  "movielens-tag."),
    data: Path = typer.Option(None, "--data", help="A folder of LaMP files (or the MovieLens folder)."),
    synthetic: str = typer.Option(None, "--synthetic", help="Synthetic users: small, medium or large."),
    methods: str = typer.Option("stats,none,rag,profile", "--methods",
                                help="Comma-separated: stats, majority, none, rag, profile, router, task, peft, "
                                "rag+peft, cdcda, continual."),
    users: int = typer.Option(None, "--users", min=1, help="Evaluate this many users (sampled with --seed)."),
    seed: int = typer.Option(0, "--seed", help="Seed for synthetic users and user sampling."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    report: Path = typer.Option(None, "--report", help="Write report.md, plots and predictions to this folder."),
) -> None:
    """Compare personalization methods on LaMP-format, synthetic or MovieLens tasks."""
    from pllm.bench.data import TASK_NAMES, questions_for
    from pllm.bench.report import gain_text, write_report
    from pllm.bench.runner import run_eval
    from pllm.bench.tasks.base import get_task
    from pllm.errors import UsageError

    if task_name not in TASK_NAMES:
        raise UsageError(f"unknown task {task_name!r}; choose from {', '.join(TASK_NAMES)}")
    settings = settings_of(ctx)
    task = get_task(task_name)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    questions, train_questions = questions_for(task, settings, data=data, synthetic=synthetic, users=users, seed=seed)
    progress = progress_bar()
    bars: dict[str, object] = {}

    def tick(method: str, done: int, total: int) -> None:
        if method not in bars:
            bars[method] = progress.add_task(f"{task_name} {method}", total=total)
        progress.update(bars[method], completed=done)  # type: ignore[arg-type]

    with progress:
        result = run_eval(task, questions, names, settings, seed=seed, train_questions=train_questions, tick=tick)
    if report is not None:
        source = f"--data {data}" if data else f"--synthetic {synthetic}" if synthetic else ""
        command = " ".join(filter(None, ["pllm eval --task", task_name, source, f"--methods {','.join(names)}",
                                         f"--users {users}" if users else "", f"--seed {seed}",
                                         f"--report {report}"]))
        write_report(result, report, command=command)
    if json_out:
        print_json(result.as_json())
        return
    table = Table(title=f"{task_name}: {result.as_json()['users']} users, {len(questions)} queries")
    metrics = list(result.methods[0].metrics)
    for col in ("method", *metrics, f"gain ({result.primary})", "s / user"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for m in result.methods:
        table.add_row(m.name, *[f"{m.metrics[k]:.3f}" for k in metrics], gain_text(m.relative_gain.get(result.primary)),
                      f"{m.seconds_per_user:.2f}")
    console.print(table)
    if report is not None:
        console.print(f"report: {report / 'report.md'}")


def register(app: typer.Typer) -> None:
    app.command()(bench)
    app.command("eval")(eval_command)
