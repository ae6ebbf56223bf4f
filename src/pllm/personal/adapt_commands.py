"""Adaptation commands: `pllm adapt` and `pllm adapters list|promote|rollback|export`."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from pllm.console import StepProgress, console, err_console, print_json, settings_of
from pllm.personal.adapters import AdapterStore
from pllm.personal.commands import unlock

adapters_app = typer.Typer(help="Your adapter versions: list, promote, rollback, export.", no_args_is_help=True)


def adapt(
    ctx: typer.Context,
    auto: bool = typer.Option(False, "--auto", help="Train only if the adaptation policy says so (and say why)."),
    json_out: bool = typer.Option(False, "--json", help="Print the run's figures as JSON."),
    no_promote: bool = typer.Option(False, "--no-promote", help="Keep the new version as a candidate."),
    force: bool = typer.Option(False, "--force", help="Promote even without held-out evidence that it generalises."),
    events: bool = typer.Option(False, "--events", hidden=True, help="Progress as JSON lines on stderr (for the "
                                "device API, which runs this in a child process and reports it)."),
) -> None:
    """Update your personal adapter now: train on the vault, gate on held-out data, promote."""
    # lazy: brings the trainer's modules, ~15 ms on every pllm call
    from pllm.personal.adapt import AdaptationPolicy, collect, pending_job, run_adaptation

    settings = settings_of(ctx)
    with unlock(settings) as vault:
        training = None
        if not pending_job(AdapterStore(vault, settings.paths.adapters)):
            # Collected once: the policy decides on it, the run trains on it.
            training = collect(vault, settings.synthetic_ratio)
            decision = AdaptationPolicy().decide(vault, len(training.examples), force=not auto)
            if not decision.train:
                if json_out:
                    print_json({"trained": False, "reason": decision.reason})
                else:
                    console.print(f"not training: {decision.reason}")
                return
            if auto:
                err_console.print(f"training: {decision.reason}")
        else:
            err_console.print("resuming the interrupted run")
        with StepProgress("adapt", events=events) as progress:
            report = run_adaptation(settings, vault, on_step=progress.step, on_phase=progress.note,
                                    promote=not no_promote, training=training, force=force)
    if json_out:
        print_json(report.as_json())
        return
    console.print(f"{report.version}: {report.steps} steps in {report.seconds:.0f} s ({report.train_dtype}) "
                  f"({report.train_tokens_per_second:.0f} tokens/s, peak {report.peak_rss_mb:.0f} MB)"
                  + (f", resumed at step {report.resumed_from}" if report.resumed_from else ""))
    console.print(("promoted: " if report.promoted else "not promoted: ") + report.reason)


def augment(
    ctx: typer.Context,
    task: str = typer.Option("texts", "--task", help="What to write more of: texts (your own notes and messages)."),
    per_seed: int = typer.Option(None, "--per-seed", min=1, max=16,
                                 help="New items asked for per seed item (PLLM_AUGMENT_PER_SEED, default 4)."),
    seeds: int = typer.Option(None, "--seeds", min=1, max=64,
                              help="Seed items: diverse (clusters) and recent (PLLM_AUGMENT_SEEDS, default 8)."),
    then_adapt: bool = typer.Option(True, "--adapt/--no-adapt",
                                    help="Then train your adapter on real + synthetic (PLLM_SYNTHETIC_RATIO)."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """CDCDA: the T-tier writes new items from your own (through the privacy gate); the device keeps what passes
    its filters, stores them marked synthetic, and adapts on real + synthetic."""
    from pllm.personal.adapt import run_adaptation  # lazy: brings the trainer's modules, ~15 ms
    from pllm.personal.augment import AugmentConfig, augment_vault  # heavy: imports fastapi and cryptography

    settings = settings_of(ctx)
    flags = {"per_seed": per_seed, "seeds": seeds}
    config = AugmentConfig.from_settings(settings, **{k: v for k, v in flags.items() if v})
    with unlock(settings) as vault:
        with console.status("asking the T-tier for new items (redacted) ..."):
            done = augment_vault(settings, vault, task, config)
        adapted = None
        if then_adapt and done.stored:
            with StepProgress("adapt") as progress:
                adapted = run_adaptation(settings, vault, on_step=progress.step, on_phase=progress.note)
    outcome = done.outcome
    figures = {"task": task, "seeds": len(outcome.seeds), **outcome.report.as_dict(), "stored": done.stored,
               "model": outcome.model, "usage": outcome.usage, "seconds": round(outcome.seconds, 2),
               "adapted": adapted.as_json() if adapted else None}
    if json_out:
        print_json(figures)
        return
    dropped = outcome.report.summary()
    console.print(f"{len(outcome.seeds)} seeds -> {outcome.report.proposed} new items from {outcome.model} in "
                  f"{outcome.seconds:.0f} s; kept {outcome.report.kept} (dropped: {dropped}); {done.stored} stored")
    if adapted:
        console.print(f"{adapted.version}: " + ("promoted: " if adapted.promoted else "not promoted: ")
                      + adapted.reason)


@adapters_app.command("list")
def adapters_list(ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Your adapter versions, their scores, and which is active."""
    settings = settings_of(ctx)
    with unlock(settings) as vault:
        versions = AdapterStore(vault, settings.paths.adapters).versions()
    if json_out:
        print_json([v.as_dict() for v in versions])
        return
    table = Table(title="adapters")
    for col in ("version", "active", "status", "steps", "held-out facts", "held-out text ppl", "general ppl",
                "created"):
        table.add_column(col)
    for v in versions:
        s = v.stats
        facts = f"{s['facts_before']}/{s['facts']} -> {s['facts_after']}/{s['facts']}" if "facts" in s else "-"
        texts = (f"{s['personal_before']:.2f} -> {s['personal_after']:.2f}"
                 if s.get("texts", 1) and "personal_before" in s else "-")
        table.add_row(v.version, "*" if v.active else "", v.status, str(s.get("steps", "")), facts, texts,
                      f"{s.get('general_before', 0):.2f} -> {s.get('general_after', 0):.2f}",
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(v.created_at)))
    console.print(table)


@adapters_app.command("promote")
def adapters_promote(ctx: typer.Context, version: str = typer.Argument(..., help="e.g. v0002")) -> None:
    """Make a version the active adapter."""
    settings = settings_of(ctx)
    with unlock(settings) as vault:
        AdapterStore(vault, settings.paths.adapters).promote(version)
    console.print(f"{version} is active")


@adapters_app.command("rollback")
def adapters_rollback(ctx: typer.Context) -> None:
    """Go back to the previously active adapter (or to the base model)."""
    settings = settings_of(ctx)
    with unlock(settings) as vault:
        now = AdapterStore(vault, settings.paths.adapters).rollback()
    console.print(f"{now} is active" if now else "no adapter is active: answers come from the base model")


@adapters_app.command("export")
def adapters_export(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="e.g. v0002"),
    folder: Path = typer.Argument(..., help="Where to write the decrypted files."),
    fmt: str = typer.Option("gguf", "--format", help="gguf (llama.cpp) or peft (transformers/peft)."),
) -> None:
    """Write a decrypted copy of a version for other tools (it leaves the vault's protection)."""
    settings = settings_of(ctx)
    with unlock(settings) as vault:
        paths = AdapterStore(vault, settings.paths.adapters).export(version, folder, fmt)
    for path in paths:
        console.print(f"wrote {path}")
    err_console.print("note: these files are not encrypted")


def register(app: typer.Typer) -> None:
    app.command("augment")(augment)
    app.command()(adapt)
    app.add_typer(adapters_app, name="adapters")
