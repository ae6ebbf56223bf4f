"""Terminal output shared by every tier's commands: the consoles, JSON printing, the settings a command runs with.

Only command modules import this; domain code returns values and never prints.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

from pllm.config import Settings, get_settings

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_json(obj: Any) -> None:
    """One JSON document on stdout, nothing else (scripts parse it)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=None) + "\n")
    sys.stdout.flush()


def settings_of(ctx: typer.Context) -> Settings:
    """The settings for this invocation: the root flags (kept on ctx.obj) over env, file and defaults."""
    root = ctx.find_root()
    overrides = root.obj or {}
    return get_settings(**overrides)
