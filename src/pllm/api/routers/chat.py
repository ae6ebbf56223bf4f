"""POST /v1/chat/completions: plain or streamed (server-sent events), as the OpenAI API answers, with function calls
(`tools`, lm/tools.py) where the request offers them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter

from pllm.api.deps import Authorised, Served
from pllm.lm import tools
from pllm.lm.runtime import Usage
from pllm.openai_http import ToolChatCompletionCreate, completion_id, error_responses, respond, respond_tool_call
from pllm.personal.serving import PERSONAL

router = APIRouter(prefix="/v1", tags=["chat"], dependencies=[Authorised],
                   responses=error_responses(400, 401, 404, 409, 413, 503))


@router.post("/chat/completions", response_model=None)
def chat_completions(body: ToolChatCompletionCreate, served: Served) -> Any:
    usage = Usage()
    model = body.model or PERSONAL
    messages = tools.transcript([m.as_message() for m in body.messages])
    ident = completion_id("chat.completion")  # feedback on the answer names it (POST /v1/feedback)
    config = body.config()
    offered = tools.parse_tools(body.tools or [])
    mode, callable_ = tools.chosen(offered, body.tool_choice)
    if mode != "none":
        messages = tools.with_tools(messages, offered)
        tool = served.plan_call(messages, mode, callable_, model=model, after_result=body.messages[-1].role == "tool")
        if tool is not None:
            budget = config.max_tokens if {"max_tokens", "max_completion_tokens"} & body.model_fields_set else \
                max(config.max_tokens, tools.CALL_MIN_TOKENS)  # unless told otherwise, room for the whole call
            config = replace(config, json_schema=tools.call_schema(tool), max_tokens=budget)
            text = "".join(served.chat(messages, config, usage, model=model, completion_id=ident))
            call = tools.parse_call(text, tool)
            if call is not None:
                return respond_tool_call(*call, usage, body.stream, model, ident)
            return respond(iter([text]), usage, body.stream, model, "chat.completion", ident)  # cut short
    pieces = served.chat(messages, config, usage, model=model, completion_id=ident, modality=body.modality)
    return respond(pieces, usage, body.stream, model, "chat.completion", ident)
