"""T-tier commands: `pllm cloud serve` and `pllm cloud keys add|list|revoke`. Thin: parse, call, print."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from pllm.config import Settings, get_settings
from pllm.console import console, err_console, joining_progress, print_json
from pllm.errors import UsageError
from pllm.lm.models import resolve_foundation_model, speed_class

if TYPE_CHECKING:
    from pllm.cloud.devices import DeviceRegistry

cloud_app = typer.Typer(help="The T-tier service (embedded default model, or proxy an OpenAI-compatible server).",
                        no_args_is_help=True)
keys_app = typer.Typer(help="Device API keys the cloud service accepts.", no_args_is_help=True)
cloud_app.add_typer(keys_app, name="keys")

STATE_HELP = "Folder for the service's own state (device keys). Default: <home>/cloud."


def _settings(ctx: typer.Context, **extra: object) -> Settings:
    root = ctx.find_root()
    return get_settings(**{**(root.obj or {}), **extra})


def _registry(settings: Settings, state: Path | None) -> DeviceRegistry:
    from pllm.cloud.devices import DeviceRegistry  # heavy: imports cryptography and sqlite3

    return DeviceRegistry((state or settings.paths.cloud) / "cloud.db")


@cloud_app.command("serve")
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8765, "--port", min=1, max=65535, help="Port to listen on."),
    upstream: str = typer.Option(None, "--upstream", help="Forward to this OpenAI-compatible server instead of the "
                                 "embedded model (vLLM, Ollama, llama-server, a hosted API). Env: PLLM_UPSTREAM_URL."),
    upstream_model: str = typer.Option(None, "--upstream-model", help="Model name to ask the upstream for."),
    state: Path = typer.Option(None, "--state", help=STATE_HELP),
) -> None:
    """Run the T-tier service: OpenAI-compatible chat and completions, and CDCDA augmentation, for devices."""
    from pllm.cloud.server import create_app  # heavy: imports fastapi
    from pllm.http_serving import run_server

    settings = _settings(ctx, upstream_url=upstream, upstream_model=upstream_model)
    app = create_app(settings, state_dir=state)
    if not app.state.devices.devices():
        err_console.print("note: no device is registered yet, so every request gets 401; "
                          "add one with `pllm cloud keys add DEVICE`")
    if settings.upstream_url:
        backend = f"upstream {settings.upstream_url}"
    else:  # joined from its packages here, with progress, the first time; the service then loads it as it is
        with joining_progress() as on_bytes:
            model = resolve_foundation_model(settings, on_bytes)
        backend = f"the embedded T-model {model.name} ({model.size_mb:.0f} MB, {speed_class(model)})"
    err_console.print(f"pllm cloud: serving {backend} on http://{host}:{port}")
    run_server(app, host, port)


@keys_app.command("add")
def keys_add(
    ctx: typer.Context,
    device: str = typer.Argument(..., help="A name for the device, e.g. maras-laptop."),
    public_key: str = typer.Option("", "--public-key", help="The device's signing key (`pllm privacy device-key` "
                                   "on the device): its requests must then be signed, and the ledger keeps each "
                                   "signature."),
    state: Path = typer.Option(None, "--state", help=STATE_HELP),
) -> None:
    """Register a device (or give it a new key) and print its key once; only a hash of it is stored."""
    key = _registry(_settings(ctx), state).add(device, public_key)
    console.print(key, markup=False)
    err_console.print("give it to the device as PLLM_CLOUD_KEY; it is not shown again")


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    state: Path = typer.Option(None, "--state", help=STATE_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """The registered devices (never their keys)."""
    devices = _registry(_settings(ctx), state).devices()
    if json_out:
        print_json([{"id": d.id, "created_at": d.created_at, "revoked": d.revoked} for d in devices])
        return
    table = Table(title="devices")
    for col in ("device", "registered", "status"):
        table.add_column(col)
    from datetime import datetime

    for d in devices:
        table.add_row(d.id, datetime.fromtimestamp(d.created_at).strftime("%Y-%m-%d %H:%M"),
                      "revoked" if d.revoked else "active")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    device: str = typer.Argument(..., help="The device to refuse from now on."),
    state: Path = typer.Option(None, "--state", help=STATE_HELP),
) -> None:
    """Refuse a device's key from the next request on."""
    if not _registry(_settings(ctx), state).revoke(device):
        raise UsageError(f"no device {device!r} (see `pllm cloud keys list`)")
    console.print(f"revoked {device}")


ledger_app = typer.Typer(help="The cloud's ledger: calls metered, charges and credits, signed and hash-chained.",
                         no_args_is_help=True)


@ledger_app.command("show")
def ledger_show(
    ctx: typer.Context,
    state: Path = typer.Option(None, "--state", help=STATE_HELP),
    device: str = typer.Option(None, "--device", help="Only this device's entries."),
    limit: int = typer.Option(20, "--limit", min=1, help="Entries shown (the latest)."),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Balances per device and per provider, the latest entries, and whether the chain and every signature hold.
    Exit 1 when they do not."""
    from pllm.cloud.ledger import Ledger  # heavy: imports cryptography and sqlite3

    settings = _settings(ctx)
    folder = state or settings.paths.cloud
    ledger = Ledger.in_folder(folder)
    keys = _registry(settings, state).public_keys()
    check = ledger.verify(keys)
    if json_out:
        data = ledger.as_json(check, limit=limit)
        if device:
            data["entries"] = [e for e in data["entries"] if e["device"] == device]
        print_json(data)
    else:
        balances = ledger.balances()
        table = Table(title="balances (credits)")
        for col in ("who", "kind", "balance"):
            table.add_column(col)
        for who, amount in sorted(balances["devices"].items()):
            table.add_row(who, "device", f"{amount:.3f}")
        for who, amount in sorted(balances["providers"].items()):
            table.add_row(who, "provider (earned)", f"{amount:.3f}")
        console.print(table)
        entries = Table(title=f"latest entries ({check.entries} in all)")
        for col in ("#", "kind", "device", "for", "tokens in/out", "credits", "signed by device"):
            entries.add_column(col)
        for e in ledger.entries(device, limit=limit):
            entries.add_row(str(e.seq), e.kind, e.device, e.provider, f"{e.tokens_in}/{e.tokens_out}",
                            f"{e.amount:+.3f}", "yes" if e.device_signature else "-")
        console.print(entries)
        console.print(f"chain: {'intact' if check.ok else 'BROKEN: ' + check.problem} ({check.entries} entries)")
    if not check.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(cloud_app, name="cloud")
    app.add_typer(ledger_app, name="ledger")
