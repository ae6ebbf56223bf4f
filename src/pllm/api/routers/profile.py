"""The user's profile over HTTP: GET /v1/profile (what the model knows), GET /v1/profile/export (everything the vault
holds, decrypted), POST /v1/profile/forget (for good, with every adapter that trained on it), and a new user's
onboarding (GET and POST /v1/profile/onboarding: a few questions, offered while the vault is empty). A bearer token is
required for all of them, even on loopback."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from pllm.api.deps import Jobs, Served, TokenHolder
from pllm.errors import PllmError
from pllm.openai_http import error_responses
from pllm.personal.onboarding import MAX_ANSWER_CHARS, QUESTIONS

router = APIRouter(prefix="/v1/profile", tags=["profile"], dependencies=[TokenHolder],
                   responses=error_responses(400, 401, 403, 409, 413))


NAMES_SOMETHING: Any = [{"required": [name], "properties": {name: kind}} for name, kind in (
    ("query", {"type": "string"}), ("all", {"const": True}), ("since", {"type": "string"}),
    ("until", {"type": "string"}))]


class ForgetRequest(BaseModel):
    """At least one of query, all (true), since, until: the schema says so, so a client built from it never sends a
    request that forgets nothing."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": NAMES_SOMETHING})

    query: str | None = Field(default=None, min_length=1, description="Forget items containing this text (literal).")
    like: StrictBool = Field(default=False, description="Read the query as an SQL LIKE pattern.")
    all: StrictBool = Field(default=False, description="Forget everything the vault holds about the user.")
    since: datetime | None = None
    until: datetime | None = None
    whole_file: StrictBool = Field(default=False, description="Forget every passage of each file that holds a "
                                   "match, not only the passages that do.")
    retrain: StrictBool = Field(default=True, description="Retrain the active adapter without the forgotten items, "
                                "in a separate process (GET /v1/adapt follows it), when the serving one trained on "
                                "them.")


    @field_validator("since", "until", mode="before")
    @classmethod
    def _date_time_text(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):  # pydantic would read a number as a Unix time
            raise ValueError("an ISO 8601 date-time string")
        return value

    @model_validator(mode="after")
    def _names_something(self) -> ForgetRequest:
        if not self.all and self.query is None and self.since is None and self.until is None:
            raise ValueError("say what to forget: query, all, since or until")
        return self

class OnboardingCreate(BaseModel):
    """Answers to the onboarding questions (GET /v1/profile/onboarding lists them); any may be left out or blank."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(default=None, max_length=MAX_ANSWER_CHARS, description=QUESTIONS[0].text)
    work: str | None = Field(default=None, max_length=MAX_ANSWER_CHARS, description=QUESTIONS[1].text)
    people: str | None = Field(default=None, max_length=MAX_ANSWER_CHARS, description=QUESTIONS[2].text)
    interests: str | None = Field(default=None, max_length=MAX_ANSWER_CHARS, description=QUESTIONS[3].text)


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


@router.get("/onboarding")
def onboarding_questions(served: Served) -> dict[str, object]:
    """Whether a first conversation is offered (the vault holds nothing yet), and its questions."""
    return {"offered": served.needs_onboarding(), "questions": [q.as_dict() for q in QUESTIONS]}


@router.post("/onboarding")
def answer_onboarding(body: OnboardingCreate, served: Served) -> dict[str, object]:
    """Store the answers as the user's own statements and facts; the facts learned, and the profile's summary."""
    learned = served.onboard({k: v for k, v in body.model_dump().items() if v is not None})
    return {"learned": [{"key": k, "value": v} for k, v in learned], "summary": served.profile()["summary"]}
