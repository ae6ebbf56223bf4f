"""`pllm privacy report`: everything that left the device, as the privacy gate logged it. Thin: read, print."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.table import Table

from pllm.console import console, print_json, settings_of
from pllm.personal.privacy import report_json, summarise

privacy_app = typer.Typer(help="What left the device, redacted, and what the gate replaced.", no_args_is_help=True)


@privacy_app.command("report")
def report(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print totals and every logged request as JSON."),
    show: bool = typer.Option(False, "--show", help="Also print each request body as it was sent (redacted)."),
) -> None:
    """Every request that left the device: when, where, why, under which consent, and what was replaced."""
    from pllm.personal.commands import unlock

    with unlock(settings_of(ctx)) as vault:
        egress = vault.egress()
    totals = summarise(egress)
    if json_out:
        print_json(report_json(egress))
        return
    table = Table(title=f"what left the device: {totals['requests']} requests, {totals['bytes']} bytes")
    for col in ("when", "to", "purpose", "consent", "bytes", "replaced"):
        table.add_column(col, justify="right" if col == "bytes" else "left")
    for e in egress:
        replaced = ", ".join(f"{k} {v}" for k, v in sorted(e.entities.items())) or "-"
        table.add_row(datetime.fromtimestamp(e.created_at).strftime("%Y-%m-%d %H:%M:%S"), e.destination, e.purpose,
                      e.consent, str(e.bytes), replaced)
    console.print(table)
    if totals["entities"]:
        console.print("replaced in all: " + ", ".join(f"{k} {v}" for k, v in totals["entities"].items()))
    if show:
        for e in egress:
            console.print(f"\n[{e.id}] {e.destination} {e.purpose}:\n{e.redacted_text}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(privacy_app, name="privacy")
