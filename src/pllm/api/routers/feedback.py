"""POST /v1/feedback: thumbs up or down, an edit, a regeneration or a rating on a personalised answer, named by
the completion id the answer came back with. Accepted and edited answers become memory and training data."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from pllm.api.deps import Authorised, Served
from pllm.openai_http import error_responses

router = APIRouter(prefix="/v1", tags=["feedback"], dependencies=[Authorised],
                   responses=error_responses(400, 401, 404, 409, 413))


class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, description="The completion id of the answer (chatcmpl-...).")
    kind: Literal["up", "down", "edit", "regenerate", "rating"]
    value: str | None = Field(default=None, description="The corrected answer (edit), or 1-5 (rating).")


@router.post("/feedback")
def give_feedback(body: FeedbackCreate, served: Served) -> dict[str, object]:
    feedback, interaction = served.feedback(body.id, body.kind, body.value)
    return {"object": "feedback", "id": feedback, "completion": body.id, "interaction": interaction,
            "kind": body.kind}
