"""The T-tier service: an OpenAI-compatible API over the T-model, plus augmentation, for registered devices.

    app = create_app(settings)               # the T-model loads in the lifespan handler
    uvicorn.run(app, host="127.0.0.1", port=8765)

Routes: `GET /healthz`, `GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions` (streamed as
server-sent events with `"stream": true`, as OpenAI does), `POST /v1/augment` (CDCDA), and the E-tier:
`GET /v1/experts` (the catalog) and `POST /v1/experts/{name}/chat/completions` (each expert an adapter on one
loaded base, loaded on the first expert request). Every `/v1` route needs a
device key (`Authorization: Bearer pllm-...`, see `pllm cloud keys add`); each device has a rate limit, every request
a size limit, and every error is OpenAI-shaped JSON (`{"error": {"message", "type", "code"}}`), never a traceback.
The routes are in routers.py (one router per resource), what they depend on in deps.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from fastapi import FastAPI

from pllm.cloud.devices import DeviceRegistry, RateLimiter
from pllm.cloud.ledger import Ledger
from pllm.cloud.routers import ROUTERS
from pllm.config import Settings
from pllm.expert.serving import ExpertPool
from pllm.http_serving import serve_background
from pllm.lm.foundation import Foundation, load_foundation
from pllm.openai_http import install_error_handlers, install_size_limit


# -- the app -----------------------------------------------------------------------------------------------------
def create_app(settings: Settings, foundation: Foundation | None = None, state_dir: Path | None = None,
               record: list[tuple[str, bytes]] | None = None) -> FastAPI:
    """The service; the T-model is loaded when it starts (or `foundation` is used as given). Its own state (device
    keys) lives in `state_dir`, by default `<home>/cloud`. With `record`, every request's path and body is appended
    to it as received: the leak test reads what a cloud would see."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.foundation = foundation or load_foundation(settings)
        yield
        app.state.experts.close()

    app = FastAPI(title="pllm cloud (T-tier)", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.state_dir = state_dir or settings.paths.cloud
    app.state.devices = DeviceRegistry(app.state.state_dir / "cloud.db")
    app.state.ledger = Ledger.in_folder(app.state.state_dir)
    app.state.limiter = RateLimiter(settings.cloud_rate_per_minute)
    app.state.experts = ExpertPool(settings)
    install_error_handlers(app)
    install_size_limit(app, settings.cloud_max_request_bytes, record)
    for router in ROUTERS:
        app.include_router(router)
    return app


@contextmanager
def serve_loopback(settings: Settings, state_dir: Path, *, device: str = "loopback",
                   record: list[tuple[str, bytes]] | None = None) -> Iterator[tuple[str, str]]:
    """The service on a free loopback port with one registered device, for benchmarks and tests that need a real
    T-tier without a separate process; yields (URL, the device's key)."""
    app = create_app(settings, state_dir=state_dir, record=record)
    key = app.state.devices.add(device)
    with serve_background(app) as url:
        yield url, key
