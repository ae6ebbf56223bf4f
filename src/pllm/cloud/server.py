"""The T-tier service: an OpenAI-compatible API over the T-model, plus augmentation, for registered devices.

    app = create_app(settings)               # the T-model loads in the lifespan handler
    uvicorn.run(app, host="127.0.0.1", port=8765)

Routes: `GET /healthz`, `GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions` (streamed as
server-sent events with `"stream": true`, as OpenAI does), `POST /v1/augment` (CDCDA), and the E-tier:
`GET /v1/experts` (the catalog) and `POST /v1/experts/{name}/chat/completions` (each expert an adapter on one
loaded base, loaded on the first expert request). Every `/v1` route needs a
device key (`Authorization: Bearer pllm-...`, see `pllm cloud keys add`); each device has a rate limit, every request
a size limit, and every error is OpenAI-shaped JSON (`{"error": {"message", "type", "code"}}`), never a traceback.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from pydantic import BaseModel, Field

from pllm.cloud.augment import AugmentRequest, Seed, augment
from pllm.cloud.devices import DeviceRegistry, RateLimiter
from pllm.cloud.ledger import Entry, Ledger
from pllm.config import Settings
from pllm.expert.serving import ExpertPool
from pllm.lm.foundation import Foundation, load_foundation
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
from pllm.signing import RECEIPT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, request_digest, verify_signature


# -- schemas -----------------------------------------------------------------------------------------------------
class SeedIn(BaseModel):
    text: str = Field(min_length=1)
    label: str | None = None


class AugmentCreate(BaseModel):
    task: str = ""
    seeds: list[SeedIn] = Field(min_length=1, max_length=64)
    context: list[SeedIn] = Field(default_factory=list, max_length=64)  # the person's other items: shown, not extended
    n: int = Field(default=3, ge=1, le=16)
    max_tokens: int = Field(default=96, ge=8, le=512)
    temperature: float = Field(default=0.9, ge=0.0, le=2.0)
    seed: int = 0
    mode: str = Field(default="auto", pattern="^(auto|list|samples)$")  # list: one JSON list per seed


class FeedbackItem(BaseModel):
    prompt: str = Field(min_length=1)
    answer: str
    verdict: str = Field(pattern="^(up|down|edit)$")
    correction: str | None = None


class ContributionCreate(BaseModel):
    kind: str = Field(default="feedback", pattern="^feedback$")
    items: list[FeedbackItem] = Field(min_length=1, max_length=256)


# -- the device behind a request --------------------------------------------------------------------------------
SIGNATURE_WINDOW_S = 300  # a signed request older (or newer) than this is refused: no replays from long ago


@dataclass(frozen=True)
class Caller:
    """The registered device that sent a request, and its signature over it (if it signs)."""

    device: str
    digest: str = ""
    signature: str = ""


async def caller(request: Request) -> Caller:
    """The registered device that sent the request, within its rate limit (else 401 or 429); a device registered
    with a public key must sign the request (X-Pllm-Timestamp, X-Pllm-Signature over `request_digest`)."""
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
    public_key = request.app.state.devices.public_key(found)
    if not public_key:
        return Caller(str(found))
    stamp = request.headers.get(TIMESTAMP_HEADER, "")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    digest = request_digest(request.method, request.url.path, await request.body(), stamp)
    try:
        fresh = abs(time.time() - float(stamp)) <= SIGNATURE_WINDOW_S
    except ValueError:
        fresh = False
    if not fresh or not verify_signature(public_key, signature, digest):
        raise ApiError(401, f"device {found} signs its requests, and this one has no valid, current signature",
                       "authentication_error", "invalid_signature")
    return Caller(str(found), digest, signature)


def paying_caller(request: Request, who: Annotated[Caller, Depends(caller)]) -> Caller:
    """A caller that may still spend: a new device gets its opening grant; one over its limit gets 402."""
    ledger: Ledger = request.app.state.ledger
    settings: Settings = request.app.state.settings
    ledger.grant_once(who.device, settings.ledger_opening_grant)
    balance = ledger.balance(who.device)
    if balance <= -settings.ledger_credit_limit:
        raise ApiError(402, f"device {who.device} has used its credits (balance {balance:.2f}); contributions "
                       "earn more", "insufficient_quota", "insufficient_quota")
    return who


Device = Annotated[Caller, Depends(caller)]
Paying = Annotated[Caller, Depends(paying_caller)]


def charge(request: Request, who: Caller, provider: str, usage: Usage, *, items: int = 0, memo: str = "") -> Entry:
    """Charge the caller for one call at the settings' prices (tokens in and out, synthetic items)."""
    settings: Settings = request.app.state.settings
    price = (usage.prompt_tokens * settings.ledger_price_in + usage.completion_tokens * settings.ledger_price_out) \
        / 1000 + items * settings.ledger_item_price
    return request.app.state.ledger.append(
        "charge", who.device, provider, amount=-price, tokens_in=usage.prompt_tokens,
        tokens_out=usage.completion_tokens, memo=memo or request.url.path, request_digest=who.digest,
        device_signature=who.signature)


def metered(request: Request, who: Caller, provider: str, usage: Usage, pieces: Iterator[str],
            receipts: list[Entry]) -> Iterator[str]:
    """The answer's pieces; once they are all out, the call is charged (a stream: at its end)."""
    yield from pieces
    receipts.append(charge(request, who, provider, usage))


def with_receipt(result: Any, response: Response, receipts: list[Entry]) -> Any:
    """A whole answer carries its signed receipt in X-Pllm-Receipt (a stream's is in `GET /v1/ledger`)."""
    if receipts:
        response.headers[RECEIPT_HEADER] = receipts[-1].receipt()
    return result


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
    state = state_dir or settings.paths.cloud
    app.state.devices = DeviceRegistry(state / "cloud.db")
    app.state.ledger = Ledger.in_folder(state)
    app.state.limiter = RateLimiter(settings.cloud_rate_per_minute)
    app.state.experts = ExpertPool(settings)
    install_error_handlers(app)
    install_size_limit(app, settings.cloud_max_request_bytes, record)

    @app.get("/healthz")
    def healthz(request: Request) -> dict[str, str]:
        return {"status": "ok", "model": request.app.state.foundation.name,
                "ledger_public_key": request.app.state.ledger.public_key}

    @app.get("/v1/models")
    def models(request: Request, _: Device) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": request.app.state.foundation.name, "object": "model",
                                            "created": 0, "owned_by": "pllm-cloud"}]}

    @app.post("/v1/chat/completions", response_model=None)
    def chat_completions(body: ChatCompletionCreate, request: Request, response: Response, who: Paying) -> Any:
        model: Foundation = request.app.state.foundation
        messages = [m.model_dump() for m in body.messages]
        usage, receipts = Usage(), list[Entry]()
        pieces = metered(request, who, "t-model", usage, model.chat_stream(messages, body.config(), usage), receipts)
        return with_receipt(respond(pieces, usage, body.stream, model.name, "chat.completion"), response, receipts)

    @app.post("/v1/completions", response_model=None)
    def completions(body: CompletionCreate, request: Request, response: Response, who: Paying) -> Any:
        model: Foundation = request.app.state.foundation
        usage, receipts = Usage(), list[Entry]()
        pieces = metered(request, who, "t-model", usage, model.complete_stream(body.prompt, body.config(), usage),
                         receipts)
        return with_receipt(respond(pieces, usage, body.stream, model.name, "text_completion"), response, receipts)

    @app.get("/v1/experts")
    def experts(request: Request, _: Device) -> dict[str, Any]:
        pool: ExpertPool = request.app.state.experts
        return {"object": "list", "data": [{**card.summary(), "examples": card.examples,
                                            "questions": pool.registry.questions(card.name)}
                                           for card in pool.catalog()]}

    @app.post("/v1/experts/{name}/chat/completions", response_model=None)
    def expert_chat(name: str, body: ChatCompletionCreate, request: Request, response: Response,
                    who: Paying) -> Any:
        pool: ExpertPool = request.app.state.experts
        usage, receipts = Usage(), list[Entry]()
        answer = pool.chat_stream(name, [m.model_dump() for m in body.messages], body.config(), usage)
        pieces = metered(request, who, f"expert:{name}", usage, answer, receipts)
        return with_receipt(respond(pieces, usage, body.stream, f"expert:{name}", "chat.completion"), response,
                            receipts)

    @app.post("/v1/augment")
    def augment_route(body: AugmentCreate, request: Request, response: Response, who: Paying) -> dict[str, Any]:
        result = augment(request.app.state.foundation, AugmentRequest(
            task=body.task, seeds=[Seed(s.text, s.label) for s in body.seeds],
            context=[Seed(s.text, s.label) for s in body.context], n=body.n,
            max_tokens=body.max_tokens, temperature=body.temperature, seed=body.seed, mode=body.mode))
        entry = charge(request, who, "t-model", result.usage, items=len(result.items),
                       memo=f"/v1/augment: {len(result.items)} items")
        return with_receipt({"object": "augmentation", "model": request.app.state.foundation.name,
                             "requests": result.requests, "seconds": round(result.seconds, 3),
                             "unparsed": result.unparsed,
                             "items": [{"seed": i.seed, "text": i.text, "label": i.label} for i in result.items],
                             "usage": result.usage.as_dict()}, response, [entry])

    @app.post("/v1/contributions")
    def contributions(body: ContributionCreate, request: Request, response: Response, who: Device) -> dict[str, Any]:
        """Feedback a device shares with its user's consent (redacted on the device): kept, and credited."""
        with (state / "contributions.jsonl").open("a", encoding="utf-8") as out:
            for item in body.items:
                out.write(json.dumps({"device": who.device, "kind": body.kind, "at": time.time(), **item.model_dump()})
                          + "\n")
        entry = request.app.state.ledger.append(
            "credit", who.device, f"contribution:{body.kind}", amount=settings.ledger_feedback_credit * len(body.items),
            memo=f"{len(body.items)} {body.kind} items", request_digest=who.digest, device_signature=who.signature)
        return with_receipt({"object": "contribution", "accepted": len(body.items), "credited": entry.amount},
                            response, [entry])

    @app.get("/v1/ledger")
    def ledger_route(request: Request, who: Device) -> dict[str, Any]:
        """The calling device's balance and its entries, each a signed receipt."""
        ledger: Ledger = request.app.state.ledger
        return {"object": "ledger", "device": who.device, "balance": round(ledger.balance(who.device), 6),
                "service_public_key": ledger.public_key,
                "receipts": [e.receipt() for e in ledger.entries(who.device)]}

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
