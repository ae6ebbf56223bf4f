"""POST /v1/adapt starts `pllm adapt` in its own process (never in the serving one); GET /v1/adapt reports its
progress: phase, step of total, loss, a measured ETA, and the run's report when it ends. A version it promotes is
served from the next request on."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from pllm.api.deps import Authorised, Jobs
from pllm.openai_http import error_responses

router = APIRouter(prefix="/v1/adapt", tags=["adapt"], dependencies=[Authorised],
                   responses=error_responses(400, 401, 409, 413))


class AdaptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: StrictBool = Field(default=False, description="Promote even without held-out evidence that it generalises.")


@router.post("", status_code=202)
def start_adaptation(jobs: Jobs, body: AdaptRequest | None = None) -> dict[str, object]:
    return jobs.start(force=body.force if body else False).as_dict()


@router.get("")
def adaptation_status(jobs: Jobs) -> dict[str, object]:
    return jobs.status().as_dict()
