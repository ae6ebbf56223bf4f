"""The `pllm` command line: one Typer app that mounts each tier's commands.

Commands only parse input, call a tier and format the result. A PllmError becomes one `error: ...` line on stderr
and its exit code; with PLLM_DEBUG=1 (or --debug) it propagates with a traceback instead.

    pllm ask "Say hello." --json
    pllm doctor
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from pllm import __version__
from pllm import doctor as checks
from pllm.api import commands as api_commands
from pllm.bench import commands as bench_commands
from pllm.cloud import commands as cloud_commands
from pllm.config import get_settings
from pllm.console import console, err_console, print_json, settings_of
from pllm.errors import FileAccessError, PllmError
from pllm.expert import commands as expert_commands
from pllm.federated import commands as fed_commands
from pllm.personal import adapt_commands, backup_commands, privacy_commands
from pllm.personal import commands as personal_commands
from pllm.processes import watch_owner


def _debug_enabled(ctx: Any) -> bool:
    """--debug, else Settings.debug (PLLM_DEBUG or the config file); settings that do not validate fall back to the
    variable itself, so their own error can still show its traceback."""
    if ctx and ctx.obj and ctx.obj.get("debug"):
        return True
    try:
        return get_settings().debug
    except (PllmError, ValueError):  # a bad PLLM_* value or config file: the very error being shown
        return os.environ.get("PLLM_DEBUG", "").lower() in ("1", "true", "yes")


class PllmGroup(TyperGroup):
    """The root group: turns PllmError, and a file the system refused, into one line and an exit code."""

    def invoke(self, ctx: Any) -> Any:  # typer vendors click: its Context type is private
        try:
            return super().invoke(ctx)
        except OSError as exc:  # a path the user named: missing, unwritable, a folder, a full disk
            if _debug_enabled(ctx):
                raise
            error: PllmError = FileAccessError(f"{exc.filename or 'a file'}: {exc.strerror or exc}")
        except PllmError as exc:
            if _debug_enabled(ctx):
                raise
            error = exc
        err_console.print(f"error: {error}", markup=False, soft_wrap=True)
        raise typer.Exit(error.exit_code) from None


app = typer.Typer(
    cls=PllmGroup,
    name="pllm",
    help="Personal language models on your own device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pllm {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: Path = typer.Option(None, "--home", help="User home (vault, adapters). Env: PLLM_HOME."),
    model: Path = typer.Option(None, "--model", "-m", help="A GGUF model file. Env: PLLM_MODEL."),
    threads: int = typer.Option(None, "--threads", "-t", min=1, help="CPU threads. Env: PLLM_THREADS."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks. Env: PLLM_DEBUG=1."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Personal language models on your own device."""
    watch_owner()  # started by another pllm (the API's adaptation job): end with it
    ctx.obj = {"home": home, "model": model, "threads": threads, "debug": debug or None}


personal_commands.register(app)
adapt_commands.register(app)
privacy_commands.register(app)
backup_commands.register(app)
cloud_commands.register(app)
expert_commands.register(app)
fed_commands.register(app)
bench_commands.register(app)
api_commands.register(app)


@app.command()
def doctor(
    ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="Print the checks as JSON.")
) -> None:
    """Check the model, the runtime and its build, the CPU and the folders pllm uses."""
    results = checks.run_checks(settings_of(ctx))
    if json_out:
        print_json([r.as_dict() for r in results])
    else:
        console.print(checks.table(results))
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # transformers' GGUF converter draws a tqdm bar of its own; pllm shows rich progress. tqdm reads this at import.
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
