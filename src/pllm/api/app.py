"""The device API's app: `create_app(settings, vault)`; the runtime loads in the lifespan handler.

    app = create_app(settings, vault)          # vault None: the base model only
    uvicorn.run(app, host="127.0.0.1", port=8766)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from pllm.api.routers import chat, models
from pllm.config import Settings
from pllm.openai_http import install_error_handlers, install_size_limit

if TYPE_CHECKING:
    from pllm.personal.vault import Vault


def create_app(settings: Settings, vault: Vault | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from pllm.lm.models import resolve_model
        from pllm.lm.runtime import Runtime
        from pllm.personal.serving import ServedModel

        app.state.served = ServedModel(Runtime.from_settings(settings), vault, settings,
                                       resolve_model(settings).name)
        try:
            yield
        finally:
            app.state.served.close()

    app = FastAPI(title="pllm serve (device API)", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    install_error_handlers(app)
    install_size_limit(app, settings.api_max_request_bytes)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(models.router)
    app.include_router(chat.router)
    return app
