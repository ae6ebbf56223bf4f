"""GET /v1/models: the personal model, each adapter version, and the base model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from pllm.api.deps import Authorised, Served
from pllm.openai_http import error_responses

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Authorised],
                   responses=error_responses(401))


@router.get("/models")
def list_models(served: Served) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": m.id, "object": "model", "created": 0, "owned_by": "pllm",
                                        "kind": m.kind, "active": m.active} for m in served.models()]}
