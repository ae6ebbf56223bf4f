"""What a route needs, as FastAPI dependencies: the served model, and the bearer token when one is set."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from pllm.openai_http import ApiError, bearer
from pllm.personal.adapt_job import AdaptJob
from pllm.personal.serving import ServedModel


def served(request: Request) -> ServedModel:
    return request.app.state.served  # type: ignore[no-any-return]


def authorised(request: Request) -> None:
    """With a token configured (always when bound beyond loopback), every /v1 request must carry it."""
    token: str = request.app.state.settings.api_token
    if token and not hmac.compare_digest(bearer(request).encode(), token.encode()):
        raise ApiError(401, "missing or wrong bearer token (PLLM_API_TOKEN)", "authentication_error",
                       "invalid_api_key")


def token_holder(request: Request) -> None:
    """The profile, export, forget and adapt routes hand out or change everything the vault holds: a token is
    required for them even on loopback, where any local process could otherwise ask."""
    if not request.app.state.settings.api_token:
        raise ApiError(403, "these routes need a bearer token: start `pllm serve` with PLLM_API_TOKEN set",
                       "permission_error", "token_not_configured")
    authorised(request)


def adapt_job(request: Request) -> AdaptJob:
    return request.app.state.adapt_job  # type: ignore[no-any-return]


Served = Annotated[ServedModel, Depends(served)]
Jobs = Annotated[AdaptJob, Depends(adapt_job)]
Authorised = Depends(authorised)
TokenHolder = Depends(token_holder)
