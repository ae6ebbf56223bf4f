"""The user's profile over HTTP: GET /v1/profile (what the model knows), GET /v1/profile/export (everything the vault
holds, decrypted) and POST /v1/profile/forget (for good, with every adapter that trained on it). A bearer token is
required for all three, even on loopback."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from pllm.api.deps import Jobs, Served, TokenHolder
from pllm.errors import PllmError

router = APIRouter(prefix="/v1/profile", tags=["profile"], dependencies=[TokenHolder])


class ForgetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(default=None, description="Forget items containing this text (literal).")
    like: bool = Field(default=False, description="Read the query as an SQL LIKE pattern.")
    all: bool = Field(default=False, description="Forget everything the vault holds about the user.")
    since: datetime | None = None
    until: datetime | None = None
    whole_file: bool = Field(default=False, description="Forget every passage of each file that holds a match, not "
                             "only the passages that do.")
    retrain: bool = Field(default=True, description="Retrain the active adapter without the forgotten items, in a "
                          "separate process (GET /v1/adapt follows it), when the serving one trained on them.")


@router.get("")
def show_profile(served: Served) -> dict[str, object]:
    return served.profile()


@router.get("/export")
def export_profile(served: Served) -> dict[str, object]:
    return served.export()


@router.post("/forget")
def forget(body: ForgetRequest, served: Served, jobs: Jobs) -> dict[str, object]:
    outcome = served.forget(query=body.query, like=body.like, everything=body.all, whole_file=body.whole_file,
                            since=body.since.timestamp() if body.since else None,
                            until=body.until.timestamp() if body.until else None)
    result = outcome.as_json()
    result["retraining"], result["retrain_skipped"] = None, (
        "not asked to retrain" if not body.retrain else "the serving adapter never trained on these items")
    if body.retrain and outcome.active_retired:
        try:
            result["retraining"], result["retrain_skipped"] = jobs.start().as_dict(), ""
        except PllmError as exc:  # forgotten all the same: say why no retraining started
            result["retrain_skipped"] = str(exc)
    return result
