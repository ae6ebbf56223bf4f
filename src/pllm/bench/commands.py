"""Bench commands: `pllm bench`. Thin: parse, run, print a table or JSON."""

from __future__ import annotations

import typer
from rich.table import Table

from pllm.console import console, print_json, progress_bar, settings_of


def bench(
    ctx: typer.Context,
    reps: int = typer.Option(5, "--reps", "-r", min=1, help="Timed repetitions per engine."),
    max_tokens: int = typer.Option(128, "--max-tokens", "-n", min=2, help="Tokens generated per repetition."),
    transformers: bool = typer.Option(True, "--transformers/--no-transformers",
                                      help="Add the transformers fp32 reference row."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Decode speed and time to first token: pllm against raw llama-cpp-python (and transformers), same run."""
    from pllm.bench.speed import run_speed_bench

    settings = settings_of(ctx)
    total = reps * (3 if transformers else 2)
    progress = progress_bar("bench")
    with progress:
        task = progress.add_task("bench", total=total)
        result = run_speed_bench(settings, reps=reps, max_tokens=max_tokens, transformers=transformers,
                                 tick=lambda: progress.advance(task))
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


def register(app: typer.Typer) -> None:
    app.command()(bench)
