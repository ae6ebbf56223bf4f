"""`pllm backup FILE` and `pllm restore FILE`: the home in one encrypted file, and back. Thin: parse, call, print."""

from __future__ import annotations

from pathlib import Path

import typer

from pllm.console import console, err_console, print_json, settings_of
from pllm.personal.backup import check_restore, restore_backup, write_backup
from pllm.personal.commands import ask_passphrase, passphrase_for
from pllm.personal.vault import open_vault


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def backup(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="The backup file to write (replaced whole if it exists)."),
    json_out: bool = typer.Option(False, "--json", help="Print what was backed up as JSON."),
) -> None:
    """Back up your vault and every adapter version into one file, encrypted under your passphrase. Safe while
    `pllm serve` runs. Model files are not included."""
    settings = settings_of(ctx)
    passphrase = passphrase_for(settings)
    with open_vault(settings.paths.vault, passphrase) as vault:
        report = write_backup(vault, settings.paths.adapters, file, passphrase)
    if report.missing:
        err_console.print(f"warning: already missing from {settings.paths.adapters}, so not in the backup: "
                          + ", ".join(report.missing), markup=False)
    if json_out:
        print_json(report.as_dict())
        return
    console.print(f"backed up {report.documents} documents, {report.facts} facts and {len(report.versions)} adapter "
                  f"versions (active: {report.active or 'none'}) to {file} ({_size(report.bytes)})", markup=False)


def restore(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A file written by `pllm backup`."),
    force: bool = typer.Option(False, "--force", help="Replace the vault and adapters this home already holds."),
    json_out: bool = typer.Option(False, "--json", help="Print what was restored as JSON."),
) -> None:
    """Restore a backup into this home (PLLM_HOME or --home), with the passphrase it was made under: the vault, every
    adapter version and the active one. All or nothing; stop `pllm serve` on this home first."""
    settings = settings_of(ctx)
    check_restore(file, settings.paths, force=force)
    passphrase = ask_passphrase(settings.paths.vault)
    report = restore_backup(file, settings.paths, passphrase, force=force)
    if json_out:
        print_json(report.as_dict())
        return
    console.print(f"restored {report.documents} documents, {report.facts} facts and {len(report.versions)} adapter "
                  f"versions (active: {report.active or 'none'}) into {report.home}", markup=False)


def register(app: typer.Typer) -> None:
    app.command()(backup)
    app.command()(restore)
