"""The T-tier service: an OpenAI-compatible API over the T-model, plus augmentation, for registered devices.

    app = create_app(settings)               # the T-model loads in the lifespan handler
    uvicorn.run(app, host="127.0.0.1", port=8765)

Routes: `GET /healthz`, `GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions` (streamed as
server-sent events with `"stream": true`, as OpenAI does), `POST /v1/augment` (CDCDA). Every `/v1` route needs a
device key (`Authorization: Bearer pllm-...`, see `pllm cloud keys add`); each device has a rate limit, every request
a size limit, and every error is OpenAI-shaped JSON (`{"error": {"message", "type", "code"}}`), never a traceback.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from pllm.cloud.augment import AugmentRequest, Seed, augment
from pllm.cloud.devices import DeviceRegistry, RateLimiter
from pllm.cloud.foundation import Foundation, Usage, load_foundation
from pllm.config import Settings
from pllm.errors import PllmError
from pllm.lm.runtime import GenerationConfig

MAX_TOKENS_CAP = 1024  # one answer, at most


# -- schemas -----------------------------------------------------------------------------------------------------
class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class Sampling(BaseModel):
    model: str | None = None
    max_tokens: int = Field(default=256, ge=1, le=MAX_TOKENS_CAP)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    seed: int = 0
    stop: str | list[str] | None = None
    stream: bool = False

    def config(self) -> GenerationConfig:
        stop = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return GenerationConfig(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                                seed=self.seed, stop=tuple(stop))


class ChatCompletionCreate(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionCreate(Sampling):
    prompt: str


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


# -- errors ------------------------------------------------------------------------------------------------------
class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.headers = status, message, type_, code, headers


def error_response(status: int, message: str, type_: str, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": None, "code": code}},
                        status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.type, exc.code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_response(400, f"{where or 'body'}: {first.get('msg', 'invalid request')}",
                              "invalid_request_error")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), "invalid_request_error")

    @app.exception_handler(PllmError)
    async def pllm_error(_: Request, exc: PllmError) -> JSONResponse:
        return error_response(exc.http_status, str(exc), type(exc).__name__)


# -- the device behind a request --------------------------------------------------------------------------------
def device(request: Request) -> str:
    """The registered device that sent the request, within its rate limit (else 401 or 429)."""
    auth = request.headers.get("authorization", "")
    key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
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
    _install_error_handlers(app)

    @app.middleware("http")
    async def limit_size(request: Request, call_next: Any) -> Any:
        limit = settings.cloud_max_request_bytes
        declared = request.headers.get("content-length")
        too_big = declared is not None and declared.isdigit() and int(declared) > limit
        if not too_big and request.method == "POST" and declared is None:
            too_big = len(await request.body()) > limit  # chunked: count what came
        if record is not None and request.method == "POST":
            record.append((request.url.path, await request.body()))
        if too_big:
            return error_response(413, f"request body over {limit} bytes", "invalid_request_error",
                                  "request_too_large")
        return await call_next(request)

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
        return _respond(pieces, usage, body.stream, model.name, "chat.completion")

    @app.post("/v1/completions", response_model=None)
    def completions(body: CompletionCreate, request: Request, _: Device) -> Any:
        model: Foundation = request.app.state.foundation
        usage = Usage()
        pieces = model.complete_stream(body.prompt, body.config(), usage)
        return _respond(pieces, usage, body.stream, model.name, "text_completion")

    @app.post("/v1/augment")
    def augment_route(body: AugmentCreate, request: Request, _: Device) -> dict[str, Any]:
        result = augment(request.app.state.foundation, AugmentRequest(
            task=body.task, seeds=[Seed(s.text, s.label) for s in body.seeds], n=body.n,
            max_tokens=body.max_tokens, temperature=body.temperature, seed=body.seed))
        return {"object": "augmentation", "model": request.app.state.foundation.name, "requests": result.requests,
                "items": [{"seed": i.seed, "text": i.text, "label": i.label} for i in result.items],
                "usage": _usage(result.usage)}

    return app


def _usage(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def _respond(pieces: Iterator[str], usage: Usage, stream: bool, model: str, kind: str) -> Any:
    """The whole answer as one JSON object, or server-sent event chunks ending in `data: [DONE]`."""
    ident = ("chatcmpl-" if kind == "chat.completion" else "cmpl-") + uuid.uuid4().hex[:24]
    created = int(time.time())

    def choice(text: str, finish: str | None, final: bool) -> dict[str, Any]:
        if kind == "chat.completion":
            key = "message" if final else "delta"
            return {"index": 0, key: {"role": "assistant", "content": text}, "finish_reason": finish}
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

    if not stream:
        text = "".join(pieces)  # a PllmError raised here becomes its JSON error
        return {"id": ident, "object": kind, "created": created, "model": model,
                "choices": [choice(text, usage.finish_reason, True)], "usage": _usage(usage)}

    chunk_kind = kind + ".chunk" if kind == "chat.completion" else kind

    def events() -> Iterator[str]:
        def event(payload: dict[str, Any]) -> str:
            return f"data: {json.dumps(payload)}\n\n"

        base = {"id": ident, "object": chunk_kind, "created": created, "model": model}
        try:
            for text in pieces:
                yield event({**base, "choices": [choice(text, None, False)]})
        except PllmError as exc:  # headers are sent: the error goes in the stream, as OpenAI does
            yield event({"error": {"message": str(exc), "type": type(exc).__name__, "param": None, "code": None}})
            return
        yield event({**base, "choices": [choice("", usage.finish_reason, False)], "usage": _usage(usage)})
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@contextmanager
def serve_background(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run `app` on a real socket in a background thread (port 0: a free one); yields its base URL."""
    import socket
    import threading

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the cloud service did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextmanager
def serve_loopback(settings: Settings, state_dir: Path, *, device: str = "loopback",
                   record: list[tuple[str, bytes]] | None = None) -> Iterator[tuple[str, str]]:
    """The service on a free loopback port with one registered device, for benchmarks and tests that need a real
    T-tier without a separate process; yields (URL, the device's key)."""
    app = create_app(settings, state_dir=state_dir, record=record)
    key = app.state.devices.add(device)
    with serve_background(app) as url:
        yield url, key
