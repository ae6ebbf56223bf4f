"""The user's adapter versions: GET /v1/adapters (scores, status, which is active), POST
/v1/adapters/{version}/promote and POST /v1/adapters/rollback. The next request serves the change."""

from __future__ import annotations

from fastapi import APIRouter

from pllm.api.deps import Authorised, Served
from pllm.openai_http import error_responses

router = APIRouter(prefix="/v1/adapters", tags=["adapters"], dependencies=[Authorised],
                   responses=error_responses(401, 404, 409))


@router.get("")
def list_adapters(served: Served) -> dict[str, object]:
    return {"object": "list", "data": served.adapters()}


@router.post("/rollback")
def rollback(served: Served) -> dict[str, object]:
    return {"active": served.promote(None)}


@router.post("/{version}/promote")
def promote(version: str, served: Served) -> dict[str, object]:
    return {"active": served.promote(version)}
