"""GET /v1/privacy/report: every request that left the device (redacted, as the privacy gate logged it), with
totals by destination, purpose, consent and entity type, as `pllm privacy report --json` prints it. Token always."""

from __future__ import annotations

from fastapi import APIRouter

from pllm.api.deps import Served, TokenHolder
from pllm.openai_http import error_responses

router = APIRouter(prefix="/v1/privacy", tags=["privacy"], dependencies=[TokenHolder],
                   responses=error_responses(401, 403, 409))


@router.get("/report")
def privacy_report(served: Served) -> dict[str, object]:
    return served.privacy_report()
