"""The T-tier service's routes, one router per resource: the T-model (OpenAI-compatible), the experts (E-tier),
augmentation (CDCDA) and the ledger. `server.create_app` mounts them; what they depend on is in deps.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from pllm.cloud.augment import AugmentRequest, Seed, augment
from pllm.cloud.deps import Device, Paying, afford, charge, metered, with_receipt
from pllm.cloud.ledger import Entry, Ledger
from pllm.expert.serving import ExpertPool
from pllm.lm.foundation import Foundation
from pllm.lm.runtime import Usage
from pllm.openai_http import ChatCompletionCreate, CompletionCreate, JsonInt, error_responses, respond


# -- schemas -----------------------------------------------------------------------------------------------------
class SeedIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: str = Field(min_length=1)
    label: str | None = None


class AugmentCreate(BaseModel):
    """A /v1/augment body; what it leaves out is as `AugmentRequest` has it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    task: str = ""
    seeds: list[SeedIn] = Field(min_length=1, max_length=64)
    context: list[SeedIn] = Field(default_factory=list, max_length=64)  # the person's other items: shown, not extended
    n: JsonInt = Field(default=AugmentRequest.n, ge=1, le=16)
    max_tokens: JsonInt = Field(default=AugmentRequest.max_tokens, ge=8, le=512)
    temperature: float = Field(default=AugmentRequest.temperature, ge=0.0, le=2.0)
    seed: JsonInt = AugmentRequest.seed
    mode: str = Field(default=AugmentRequest.mode, pattern="^(auto|list|samples)$")  # list: one JSON list per seed


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = Field(min_length=1)
    answer: str
    verdict: str = Field(pattern="^(up|down|edit)$")
    correction: str | None = None


class ContributionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    kind: str = Field(default="feedback", pattern="^feedback$")
    items: list[FeedbackItem] = Field(min_length=1, max_length=256)



service = APIRouter(tags=["T-model"])
experts_router = APIRouter(tags=["experts"])
augment_router = APIRouter(tags=["augmentation"])
ledger_router = APIRouter(tags=["ledger"])
ROUTERS = (service, experts_router, augment_router, ledger_router)
KEYED = (401, 429)  # a device key, within its rate
PAID = (400, 401, 402, 413, 429, 502, 503)  # and credits; what the T-model or its upstream may answer


@service.get("/healthz")
def healthz(request: Request) -> dict[str, str]:
    return {"status": "ok", "model": request.app.state.foundation.name,
            "ledger_public_key": request.app.state.ledger.public_key}

@service.get("/v1/models", responses=error_responses(*KEYED))
def models(request: Request, _: Device) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": request.app.state.foundation.name, "object": "model",
                                        "created": 0, "owned_by": "pllm-cloud"}]}

@service.post("/v1/chat/completions", response_model=None, responses=error_responses(*PAID))
def chat_completions(body: ChatCompletionCreate, request: Request, response: Response, who: Paying) -> Any:
    model: Foundation = request.app.state.foundation
    afford(request, who, tokens_out=body.config().max_tokens)
    messages = [m.as_message() for m in body.messages]
    usage, receipts = Usage(), list[Entry]()
    pieces = metered(request, who, "t-model", usage, model.chat_stream(messages, body.config(), usage), receipts)
    return with_receipt(respond(pieces, usage, body.stream, model.name, "chat.completion"), response, receipts)

@service.post("/v1/completions", response_model=None, responses=error_responses(*PAID))
def completions(body: CompletionCreate, request: Request, response: Response, who: Paying) -> Any:
    model: Foundation = request.app.state.foundation
    afford(request, who, tokens_out=body.config().max_tokens)
    usage, receipts = Usage(), list[Entry]()
    pieces = metered(request, who, "t-model", usage, model.complete_stream(body.prompt, body.config(), usage),
                     receipts)
    return with_receipt(respond(pieces, usage, body.stream, model.name, "text_completion"), response, receipts)

@experts_router.get("/v1/experts", responses=error_responses(*KEYED))
def experts(request: Request, _: Device) -> dict[str, Any]:
    pool: ExpertPool = request.app.state.experts
    return {"object": "list", "data": [{**card.summary(), "examples": card.examples,
                                        "questions": pool.registry.questions(card.name)}
                                       for card in pool.catalog()]}

@experts_router.post("/v1/experts/{name}/chat/completions", response_model=None,
                     responses=error_responses(*PAID, 404))
def expert_chat(name: str, body: ChatCompletionCreate, request: Request, response: Response,
                who: Paying) -> Any:
    pool: ExpertPool = request.app.state.experts
    afford(request, who, tokens_out=body.config().max_tokens)
    usage, receipts = Usage(), list[Entry]()
    answer = pool.chat_stream(name, [m.as_message() for m in body.messages], body.config(), usage)
    pieces = metered(request, who, f"expert:{name}", usage, answer, receipts)
    return with_receipt(respond(pieces, usage, body.stream, f"expert:{name}", "chat.completion"), response,
                        receipts)

@augment_router.post("/v1/augment", responses=error_responses(*PAID))
def augment_route(body: AugmentCreate, request: Request, response: Response, who: Paying) -> dict[str, Any]:
    items = len(body.seeds) * body.n
    afford(request, who, tokens_out=items * body.max_tokens, items=items)
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

@ledger_router.post("/v1/contributions", responses=error_responses(400, *KEYED, 413))
def contributions(body: ContributionCreate, request: Request, response: Response, who: Device) -> dict[str, Any]:
    """Feedback a device shares with its user's consent (redacted on the device): kept, and credited."""
    with (request.app.state.state_dir / "contributions.jsonl").open("a", encoding="utf-8") as out:
        for item in body.items:
            out.write(json.dumps({"device": who.device, "kind": body.kind, "at": time.time(), **item.model_dump()})
                      + "\n")
    entry = request.app.state.ledger.append(
        "credit", who.device, f"contribution:{body.kind}",
        amount=request.app.state.settings.ledger_feedback_credit * len(body.items),
        memo=f"{len(body.items)} {body.kind} items", request_digest=who.digest, device_signature=who.signature)
    return with_receipt({"object": "contribution", "accepted": len(body.items), "credited": entry.amount},
                        response, [entry])

@ledger_router.get("/v1/ledger", responses=error_responses(*KEYED))
def ledger_route(request: Request, who: Device) -> dict[str, Any]:
    """The calling device's balance and its entries, each a signed receipt."""
    ledger: Ledger = request.app.state.ledger
    return {"object": "ledger", "device": who.device, "balance": round(ledger.balance(who.device), 6),
            "service_public_key": ledger.public_key,
            "receipts": [e.receipt() for e in ledger.entries(who.device)]}
