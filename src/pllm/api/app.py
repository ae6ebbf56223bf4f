"""The device API's app: `create_app(settings, vault)`; the runtime loads in the lifespan handler.

    app = create_app(settings, vault, passphrase)  # vault None: the base model only; passphrase None: no /v1/adapt
    uvicorn.run(app, host="127.0.0.1", port=8766)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.formparsers import MultiPartParser

from pllm.api.routers import adapt, adapters, audio, chat, embeddings, feedback, models, privacy, profile
from pllm.config import Settings
from pllm.lm.models import resolve_model
from pllm.lm.runtime import Runtime
from pllm.openai_http import install_error_handlers, install_size_limit
from pllm.personal.adapt_job import AdaptJob
from pllm.personal.serving import ServedModel

WEB = Path(__file__).with_name("web")  # the page: committed static files, nothing from a CDN

if TYPE_CHECKING:
    from pllm.personal.vault import Vault


def create_app(settings: Settings, vault: Vault | None = None, passphrase: str | None = None) -> FastAPI:
    """The passphrase goes only to the environment of the training processes /v1/adapt starts."""
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.served = ServedModel(Runtime.from_settings(settings), vault, settings,
                                       resolve_model(settings).name)
        try:
            yield
        finally:
            app.state.adapt_job.close()
            app.state.served.close()

    app = FastAPI(title="pllm serve (device API)", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.adapt_job = AdaptJob(settings, passphrase)
    install_error_handlers(app)
    install_size_limit(app, settings.api_max_request_bytes,
                       per_path={audio.TRANSCRIPTIONS: settings.api_max_audio_bytes})
    # A recording stays in memory up to the size the route accepts: Starlette spools a larger upload part to an
    # unencrypted temporary file, and a user's voice must not touch the disk.
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, settings.api_max_audio_bytes)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    for router in (models.router, chat.router, embeddings.router, audio.router, feedback.router, profile.router,
                   adapt.router, adapters.router, privacy.router):
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB / "index.html")

    app.mount("/web", StaticFiles(directory=WEB), name="web")
    return app
