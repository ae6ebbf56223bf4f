"""POST /v1/embeddings: the packaged all-MiniLM-L6-v2 on the device, as OpenAI's API answers, so an app can do its
own retrieval without sending its texts anywhere."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, field_validator

from pllm.api.deps import Authorised, Served
from pllm.lm.embeddings import MODEL_NAME
from pllm.openai_http import ApiError, error_responses

router = APIRouter(prefix="/v1", tags=["embeddings"], dependencies=[Authorised],
                   responses=error_responses(400, 401, 404, 413, 503))
MAX_INPUTS = 256  # texts in one request


class EmbeddingCreate(BaseModel):
    input: str | Annotated[list[str], Field(min_length=1, max_length=MAX_INPUTS)] = Field(
        description="A text, or a list of 1 to 256 texts.")
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Literal[384] | None = Field(default=None, description="all-MiniLM-L6-v2 gives 384.")
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        if isinstance(value, list) and value and not all(isinstance(v, str) for v in value):
            raise ValueError("token arrays are not supported: send the texts")
        if isinstance(value, list) and not 1 <= len(value) <= MAX_INPUTS:
            raise ValueError(f"between 1 and {MAX_INPUTS} texts")
        return value


@router.post("/embeddings")
def create_embeddings(body: EmbeddingCreate, served: Served) -> dict[str, Any]:
    if body.model not in (None, MODEL_NAME):
        raise ApiError(404, f"no embedding model {body.model!r}: this device serves {MODEL_NAME}",
                       "invalid_request_error", "model_not_found")
    embedder = served.embedder()
    if body.dimensions not in (None, embedder.dim):
        raise ApiError(400, f"dimensions: {MODEL_NAME} gives {embedder.dim}", "invalid_request_error")
    texts = [body.input] if isinstance(body.input, str) else body.input
    vectors = embedder.encode(texts)  # the encoder serves one batch at a time itself
    tokens = embedder.count_tokens(texts)
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode() if body.encoding_format == "base64"
             else [float(x) for x in v]}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": MODEL_NAME,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
