"""Function calls through `pllm serve` (the real packaged model, a real vault) with the `openai` SDK, as an app
makes them: a required call that validates, streamed as the SDK assembles it; the follow-up turn with the tool's
result answered in text; `auto` on a question no tool answers; what cannot be used is a 400 that names it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest
from openai import OpenAI

from pllm.api.app import create_app
from pllm.config import Settings
from pllm.http_serving import serve_background
from pllm.personal.vault import Vault

PASSPHRASE = "s3cret"
NOTE = "My sister Sam lives in Lisbon."
TOOLS = json.loads((Path(__file__).resolve().parents[2] / "data" / "tools" / "tools.json").read_text())
PARAMETERS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


@pytest.fixture
def client(vault: Vault) -> Iterator[OpenAI]:
    with serve_background(create_app(Settings(), vault)) as url:
        yield OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def _ask(client: OpenAI, question: str, **kw: object) -> object:
    return client.chat.completions.create(model="pllm", temperature=0, tools=TOOLS,  # type: ignore[call-overload]
                                          messages=[{"role": "user", "content": question}], **kw)


@pytest.mark.parametrize("stream", [False, True])
def test_a_required_call_names_a_function_with_arguments_that_validate(client: OpenAI, stream: bool) -> None:
    reply = _ask(client, "What's the weather in Lisbon right now?", tool_choice="required", stream=stream)
    if stream:
        name, arguments, ident, finish = "", "", "", None
        for chunk in reply:  # type: ignore[attr-defined]
            choice = chunk.choices[0]
            for call in choice.delta.tool_calls or []:
                ident = call.id or ident
                name += call.function.name or ""
                arguments += call.function.arguments or ""
            finish = choice.finish_reason or finish
    else:
        choice = reply.choices[0]  # type: ignore[attr-defined]
        assert choice.message.content is None
        (call,) = choice.message.tool_calls
        name, arguments, ident, finish = call.function.name, call.function.arguments, call.id, choice.finish_reason
    assert finish == "tool_calls" and ident.startswith("call_")
    assert name == "get_weather", name  # the function nearest the request
    jsonschema.validate(json.loads(arguments), PARAMETERS[name])


def test_a_named_function_is_called_and_its_result_answered_in_text(client: OpenAI) -> None:
    question = "Tell Sam I will be ten minutes late."
    first = _ask(client, question, tool_choice={"type": "function", "function": {"name": "send_message"}})
    (call,) = first.choices[0].message.tool_calls  # type: ignore[attr-defined]
    assert call.function.name == "send_message"
    jsonschema.validate(json.loads(call.function.arguments), PARAMETERS["send_message"])
    follow = client.chat.completions.create(model="pllm", temperature=0, tools=TOOLS, max_tokens=40, messages=[
        {"role": "user", "content": question},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"status": "sent"}'}])
    answer = follow.choices[0]
    assert answer.finish_reason in ("stop", "length") and not answer.message.tool_calls
    assert answer.message.content and answer.message.content.strip()


def test_auto_answers_a_question_no_tool_answers_in_text(client: OpenAI) -> None:
    reply = _ask(client, "Who wrote Hamlet?", tool_choice="auto", max_tokens=24)
    choice = reply.choices[0]  # type: ignore[attr-defined]
    assert not choice.message.tool_calls and choice.message.content


def test_tools_that_cannot_be_used_are_a_400_that_names_them(client: OpenAI) -> None:
    url = str(client.base_url).rstrip("/")
    hello = [{"role": "user", "content": "hi"}]
    for body, named in (({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
                         "nope"),
                        ({"tools": [{"type": "retrieval"}]}, "tools[0]"),
                        ({"tool_choice": "required"}, "needs tools"),
                        ({"tools": TOOLS, "messages": [*hello, {"role": "tool", "tool_call_id": "call_x",
                                                                 "content": "42"}]}, "call_x")):
        reply = httpx.post(url + "/chat/completions", json={"messages": hello, **body})
        assert reply.status_code == 400 and named in reply.json()["error"]["message"], reply.text
