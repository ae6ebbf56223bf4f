"""What a route needs, as FastAPI dependencies: the served model, and the bearer token when one is set."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from pllm.openai_http import ApiError, bearer
from pllm.personal.serving import ServedModel


def served(request: Request) -> ServedModel:
    return request.app.state.served  # type: ignore[no-any-return]


def authorised(request: Request) -> None:
    """With a token configured (always when bound beyond loopback), every /v1 request must carry it."""
    token: str = request.app.state.settings.api_token
    if token and not hmac.compare_digest(bearer(request).encode(), token.encode()):
        raise ApiError(401, "missing or wrong bearer token (PLLM_API_TOKEN)", "authentication_error",
                       "invalid_api_key")


Served = Annotated[ServedModel, Depends(served)]
Authorised = Depends(authorised)
