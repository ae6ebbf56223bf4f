"""POST /v1/chat/completions: plain or streamed (server-sent events), as the OpenAI API answers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from pllm.api.deps import Authorised, Served
from pllm.lm.runtime import Message, Usage
from pllm.openai_http import ChatCompletionCreate, completion_id, respond
from pllm.personal.serving import PERSONAL

router = APIRouter(prefix="/v1", tags=["chat"], dependencies=[Authorised])


@router.post("/chat/completions", response_model=None)
def chat_completions(body: ChatCompletionCreate, served: Served) -> Any:
    usage = Usage()
    model = body.model or PERSONAL
    messages: list[Message] = [{"role": m.role, "content": m.content} for m in body.messages]
    ident = completion_id("chat.completion")  # feedback on the answer names it (POST /v1/feedback)
    pieces = served.chat(messages, body.config(), usage, model=model, completion_id=ident)
    return respond(pieces, usage, body.stream, model, "chat.completion", ident)
