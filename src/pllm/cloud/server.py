"""The T-tier service: an OpenAI-compatible API over the T-model, plus augmentation, for registered devices.

    app = create_app(settings)               # the T-model loads in the lifespan handler
    uvicorn.run(app, host="127.0.0.1", port=8765)

Routes: `GET /healthz`, `GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions` (streamed as
server-sent events with `"stream": true`, as OpenAI does), `POST /v1/augment` (CDCDA). Every `/v1` route needs a
device key (`Authorization: Bearer pllm-...`, see `pllm cloud keys add`); each device has a rate limit, every request
a size limit, and every error is OpenAI-shaped JSON (`{"error": {"message", "type", "code"}}`), never a traceback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, Field

from pllm.cloud.augment import AugmentRequest, Seed, augment
from pllm.cloud.devices import DeviceRegistry, RateLimiter
from pllm.cloud.foundation import Foundation, load_foundation
from pllm.config import Settings
from pllm.openai_http import (
    ApiError,
    ChatCompletionCreate,
    CompletionCreate,
    Usage,
    bearer,
    install_error_handlers,
    install_size_limit,
    respond,
    serve_background,
)


# -- schemas -----------------------------------------------------------------------------------------------------
class SeedIn(BaseModel):
    text: str = Field(min_length=1)
    label: str | None = None


class AugmentCreate(BaseModel):
    task: str = ""
    seeds: list[SeedIn] = Field(min_length=1, max_length=64)
    n: int = Field(default=3, ge=1, le=16)
    max_tokens: int = Field(default=96, ge=8, le=512)
    temperature: float = Field(default=0.9, ge=0.0, le=2.0)
    seed: int = 0


# -- the device behind a request --------------------------------------------------------------------------------
def device(request: Request) -> str:
    """The registered device that sent the request, within its rate limit (else 401 or 429)."""
    key = bearer(request)
    found = request.app.state.devices.verify(key) if key else None
    if found is None:
        raise ApiError(401, "missing or unknown device API key (register one with `pllm cloud keys add`)",
                       "authentication_error", "invalid_api_key")
    limiter: RateLimiter = request.app.state.limiter
    wait = limiter.allow(found)
    if wait:
        raise ApiError(429, f"rate limit of {limiter.per_minute} requests a minute reached", "rate_limit_error",
                       "rate_limit_exceeded", {"Retry-After": str(int(wait) + 1)})
    return str(found)


Device = Annotated[str, Depends(device)]


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

    app = FastAPI(title="pllm cloud (T-tier)", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.devices = DeviceRegistry((state_dir or settings.paths.cloud) / "cloud.db")
    app.state.limiter = RateLimiter(settings.cloud_rate_per_minute)
    install_error_handlers(app)
    install_size_limit(app, settings.cloud_max_request_bytes, record)

    @app.get("/healthz")
    def healthz(request: Request) -> dict[str, str]:
        return {"status": "ok", "model": request.app.state.foundation.name}

    @app.get("/v1/models")
    def models(request: Request, _: Device) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": request.app.state.foundation.name, "object": "model",
                                            "created": 0, "owned_by": "pllm-cloud"}]}

    @app.post("/v1/chat/completions", response_model=None)
    def chat_completions(body: ChatCompletionCreate, request: Request, _: Device) -> Any:
        model: Foundation = request.app.state.foundation
        messages = [m.model_dump() for m in body.messages]
        usage = Usage()
        pieces = model.chat_stream(messages, body.config(), usage)
        return respond(pieces, usage, body.stream, model.name, "chat.completion")

    @app.post("/v1/completions", response_model=None)
    def completions(body: CompletionCreate, request: Request, _: Device) -> Any:
        model: Foundation = request.app.state.foundation
        usage = Usage()
        pieces = model.complete_stream(body.prompt, body.config(), usage)
        return respond(pieces, usage, body.stream, model.name, "text_completion")

    @app.post("/v1/augment")
    def augment_route(body: AugmentCreate, request: Request, _: Device) -> dict[str, Any]:
        result = augment(request.app.state.foundation, AugmentRequest(
            task=body.task, seeds=[Seed(s.text, s.label) for s in body.seeds], n=body.n,
            max_tokens=body.max_tokens, temperature=body.temperature, seed=body.seed))
        return {"object": "augmentation", "model": request.app.state.foundation.name, "requests": result.requests,
                "items": [{"seed": i.seed, "text": i.text, "label": i.label} for i in result.items],
                "usage": result.usage.as_dict()}

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
