"""`pllm serve`: the device API on loopback (or beyond, with a token). Thin: unlock, build the app, run it."""

from __future__ import annotations

import ipaddress

import typer

from pllm.console import err_console, settings_of
from pllm.errors import UsageError
from pllm.personal.commands import passphrase_for
from pllm.personal.vault import open_vault


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default; anything else "
                             "needs PLLM_API_TOKEN)."),
    port: int = typer.Option(8766, "--port", min=1, max=65535, help="Port to listen on."),
) -> None:
    """Serve your model to apps on this device: OpenAI-compatible chat (plain and streamed), the model list,
    feedback, your profile (show, export, forget) and adaptation in a separate process."""
    from pllm.api.app import create_app  # heavy: imports fastapi
    from pllm.http_serving import run_server

    settings = settings_of(ctx)
    if not _is_loopback(host) and not settings.api_token:
        raise UsageError(f"binding {host} reaches beyond this device: set PLLM_API_TOKEN first")
    passphrase = passphrase_for(settings) if settings.paths.vault.is_file() else None
    vault = open_vault(settings.paths.vault, passphrase) if passphrase is not None else None
    if vault is None:
        err_console.print("note: no vault yet, so only the base model is served (create one with `pllm init`)")
    app = create_app(settings, vault, passphrase)
    err_console.print(f"pllm serve: http://{host}:{port}/v1 (models: GET /v1/models)")
    try:
        run_server(app, host, port)
    finally:
        if vault is not None:
            vault.close()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
