"""Terminal output shared by every tier's commands: the consoles, JSON printing, the settings a command runs with.

Only command modules import this; domain code returns values and never prints.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pllm.config import Settings, get_settings

# soft_wrap: a message is one line however narrow the terminal (scripts and tests read them line by line).
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def progress_bar(label: str = "{task.description}") -> Progress:
    """A rich progress bar on stderr that vanishes when done and stays silent when stderr is no terminal."""
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=True, disable=not err_console.is_terminal)


def print_json(obj: Any) -> None:
    """One JSON document on stdout, nothing else (scripts parse it)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=None) + "\n")
    sys.stdout.flush()


def settings_of(ctx: typer.Context) -> Settings:
    """The settings for this invocation: the root flags (kept on ctx.obj) over env, file and defaults."""
    root = ctx.find_root()
    overrides = root.obj or {}
    return get_settings(**overrides)
