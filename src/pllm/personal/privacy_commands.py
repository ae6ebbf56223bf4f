"""`pllm privacy report`: everything that left the device, as the privacy gate logged it. Thin: read, print."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.table import Table

from pllm.console import console, print_json, settings_of
from pllm.errors import UsageError
from pllm.personal.commands import unlock
from pllm.personal.privacy import PrivacyGate, report_json, summarise

privacy_app = typer.Typer(help="What left the device, redacted, and what the gate replaced.", no_args_is_help=True)


@privacy_app.command("report")
def report(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print totals and every logged request as JSON."),
    show: bool = typer.Option(False, "--show", help="Also print each request body as it was sent (redacted)."),
) -> None:
    """Every request that left the device: when, where, why, under which consent, and what was replaced."""
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


@privacy_app.command("device-key")
def device_key_command(ctx: typer.Context) -> None:
    """This device's public signing key (made on first use; the private half stays in the vault). Give it to the
    cloud's operator: `pllm cloud keys add DEVICE --public-key KEY`, and the cloud's ledger holds your signature on
    every request you were charged for."""
    from pllm.personal.remote import device_key  # heavy: imports fastapi and cryptography
    from pllm.signing import public_key_b64  # heavy: imports cryptography

    with unlock(settings_of(ctx)) as vault:
        console.print(public_key_b64(device_key(vault)), markup=False)


@privacy_app.command("receipts")
def receipts(ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """The cloud's signed receipts for what this device paid and earned, checked against the cloud's key."""
    from pllm.signing import verify_signature  # heavy: imports cryptography

    settings = settings_of(ctx)
    with unlock(settings) as vault:
        if settings.cloud_url:  # the receipts of streamed answers, and the cloud's key, come from its ledger
            from pllm.personal.remote import CloudClient  # heavy: imports fastapi and cryptography

            CloudClient(settings, PrivacyGate(settings, vault, ner=False)).sync_ledger()
        kept = vault.receipts()
        key = vault.get_meta("cloud_ledger_key")
    rows = [{**r, "signature_ok": bool(key) and verify_signature(key, r["service_signature"], r["hash"])}
            for r in kept]
    if json_out:
        print_json({"cloud_key": key or None, "receipts": rows, "total": round(sum(r["amount"] for r in rows), 6)})
        return
    table = Table(title=f"receipts: {len(rows)}, {sum(r['amount'] for r in rows):+.3f} credits in all")
    for col in ("#", "when", "for", "tokens in/out", "credits", "signed"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["seq"]), datetime.fromtimestamp(r["at"]).strftime("%Y-%m-%d %H:%M:%S"), r["provider"],
                      f"{r['tokens_in']}/{r['tokens_out']}", f"{r['amount']:+.3f}",
                      "yes" if r["signature_ok"] else "unchecked" if not key else "NO")
    console.print(table)


@privacy_app.command("share-feedback")
def share_feedback(
    ctx: typer.Context,
    yes: bool = typer.Option(False, "--yes", help="Share without asking (you consent to this one sharing)."),
) -> None:
    """Share your thumbs up, thumbs down and edits not shared yet with the cloud, redacted by the privacy gate, for
    credits in its ledger. Nothing is shared without this command."""
    from pllm.personal.remote import CloudClient  # heavy: imports fastapi and cryptography

    settings = settings_of(ctx)
    with unlock(settings) as vault:
        after = int(vault.get_meta("feedback_shared_through", "0") or 0)
        asked = {i.id: i for i in vault.interactions()}
        feedback = vault.feedback()
        items = [{"prompt": asked[f.interaction_id].prompt, "answer": asked[f.interaction_id].answer,
                  "verdict": f.kind, "correction": f.value if f.kind == "edit" else None}
                 for f in feedback if f.id > after and f.kind in ("up", "down", "edit") and f.interaction_id in asked]
        last = max((f.id for f in feedback), default=after)
        if not items:
            console.print("no feedback to share")
            return
        if not yes and not typer.confirm(f"share {len(items)} feedback items with {settings.cloud_url or 'the cloud'}"
                                         ", redacted?", err=True):
            raise UsageError("nothing shared")
        credited = CloudClient(settings, PrivacyGate(settings, vault)).share_feedback(items)
        vault.set_meta("feedback_shared_through", str(last))
    console.print(f"shared {len(items)} feedback items, redacted; credited {credited:.2f}")


def register(app: typer.Typer) -> None:
    app.add_typer(privacy_app, name="privacy")
