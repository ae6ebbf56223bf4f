"""What every route of the T-tier service depends on: the calling device (its key, its rate limit, its signature),
whether it may still spend, and the ledger's metering of each call.

    who: Device          # a route's parameter: the registered device that sent the request
    who: Paying          # ... that still has credit (402 otherwise)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from pllm.cloud.devices import RateLimiter
from pllm.cloud.ledger import Entry, Ledger
from pllm.config import Settings
from pllm.lm.runtime import Usage
from pllm.openai_http import ApiError, bearer
from pllm.signing import RECEIPT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, request_digest, verify_signature

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


def afford(request: Request, who: Caller, *, tokens_out: int, items: int = 0) -> None:
    """402 unless the caller's balance covers the most a call may cost (its answer budget at the output price, and
    its synthetic items), so that no request runs up more than the device has, however long it asks to run."""
    settings: Settings = request.app.state.settings
    most = tokens_out * settings.ledger_price_out / 1000 + items * settings.ledger_item_price
    balance = request.app.state.ledger.balance(who.device)
    if balance - most < -settings.ledger_credit_limit:
        raise ApiError(402, f"device {who.device} has {balance:.2f} credits and this call may cost {most:.2f}: ask "
                       "for fewer tokens, or contribute to earn more", "insufficient_quota", "insufficient_quota")


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
