"""Function calling (OpenAI's `tools`) on a model that was never taught it.

The functions are described in the system turn; a call is decoded under a grammar built from the functions'
parameter schemas, so its name is one of them and its arguments always parse and validate. Whether to call at all
(`tool_choice: auto`) is the model's own probability of opening a call, against a threshold chosen on a labelled
development set (`data/tools/`, the error rates in docs/BENCHMARKS.md); which function, the one nearest the
request by the packaged sentence embedder. Calls and results already in the
conversation become plain turns the model can read.

    tools = parse_tools(body.tools)
    messages = with_tools(transcript(body.messages), tools)
    mode, callable_ = chosen(tools, tool_choice)
    tool = plan_call(runtime, messages, mode, callable_, embedder=embedder)  # None: answer in text
    text = ...decoded under call_schema(tool)...
    name, arguments = parse_call(text, tool)
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pllm.errors import UsageError
from pllm.lm.embeddings import Embedder
from pllm.lm.grammar import bounded_schema
from pllm.lm.runtime import Message, Runtime

CALL_OPENER = "<tool_call>"
# tool_choice "auto" calls when log P(CALL_OPENER | conversation) is at least this: on the development questions
# (data/tools/tool-questions-dev.jsonl, SmolLM2-135M) it makes 2 errors in 40, as few as any threshold there.
AUTO_LOG_THRESHOLD = math.log(8e-4)
ANSWER_WITH = "Use this to answer: "  # ends the user turn that hands over tool results
CALL_MIN_TOKENS = 512  # a call is decoded whole: room for its bounded arguments (lm/grammar.py) even when it loops


class ToolError(UsageError):
    """A request's tools or tool messages that cannot be used as given."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]

    def described(self) -> str:
        return json.dumps({"name": self.name, "description": self.description, "parameters": self.parameters})


def parse_tools(tools: Sequence[Any]) -> list[Tool]:
    """OpenAI's `tools` list as Tools; ToolError naming what is wrong."""
    parsed = []
    for n, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise ToolError(f"tools[{n}]: only {{'type': 'function', 'function': {{...}}}} tools are supported")
        function = tool["function"]
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise ToolError(f"tools[{n}].function.name is required")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise ToolError(f"tools[{n}].function.parameters must be a JSON Schema object")
        parsed.append(Tool(name, str(function.get("description") or ""), parameters))
    if len({t.name for t in parsed}) != len(parsed):
        raise ToolError("tools: two functions share a name")
    return parsed


def chosen(tools: list[Tool], tool_choice: Any) -> tuple[str, list[Tool]]:
    """(mode, the tools a call may use): mode "none", "auto" or "required" (a named function is "required" with
    that one tool). ToolError for a choice that names no given function."""
    if tool_choice is None:
        return ("auto" if tools else "none"), tools
    if tool_choice in ("none", "auto", "required"):
        if tool_choice != "none" and not tools:
            raise ToolError(f"tool_choice {tool_choice!r} needs tools")
        return tool_choice, tools
    name = tool_choice.get("function", {}).get("name") if isinstance(tool_choice, dict) else None
    named = [t for t in tools if t.name == name]
    if not named:
        raise ToolError(f"tool_choice names no given function: {name!r}")
    return "required", named


def system_text(tools: list[Tool]) -> str:
    lines = "\n".join(t.described() for t in tools)
    return (f"You can call these functions:\n<tools>\n{lines}\n</tools>\nWhen a function can answer the user's "
            f"request, reply only with a call: {CALL_OPENER}{{\"name\": <function name>, \"arguments\": "
            "<arguments object>}</tool_call>. Otherwise answer the user directly.")


def with_tools(messages: list[Message], tools: list[Tool]) -> list[Message]:
    """The conversation with the functions described in its system turn (added, or appended to the first)."""
    text = system_text(tools)
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + text}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _call_text(name: str, arguments: str) -> str:
    try:
        parsed: Any = json.loads(arguments)
    except json.JSONDecodeError:
        parsed = arguments
    return CALL_OPENER + json.dumps({"name": name, "arguments": parsed}) + "</tool_call>"


def transcript(messages: Sequence[dict[str, Any]]) -> list[Message]:
    """Messages as the model reads them: an assistant's `tool_calls` as call text, and the `tool` results that
    follow it as one user turn that hands them over and repeats the question they answer."""
    names: dict[str, str] = {}  # call id -> function name
    out: list[Message] = []
    results: list[str] = []
    question = ""

    def hand_over() -> None:
        if results:
            out.append({"role": "user", "content": "\n".join(results) + f"\n\n{ANSWER_WITH}{question}"})
            results.clear()

    for m in messages:
        role, content = m["role"], m.get("content") or ""
        if role == "tool":
            ident = m.get("tool_call_id") or ""
            if ident not in names:
                raise ToolError(f"a tool message answers no earlier tool call: tool_call_id {ident!r}")
            results.append(f"Result of {names[ident]}: {content}")
            continue
        hand_over()
        if role == "assistant" and m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                names[call["id"]] = call["function"]["name"]
                calls.append(_call_text(call["function"]["name"], call["function"]["arguments"]))
            out.append({"role": "assistant", "content": "\n".join([content, *calls]).strip()})
            continue
        if role == "user":
            question = content
        out.append({"role": role, "content": content})
    hand_over()
    return out


def call_schema(tool: Tool) -> str:
    """The JSON Schema a call of `tool` must match: its name, and arguments that fit its parameters (bounded, so
    that the call ends within its budget: lm/grammar.py)."""
    return json.dumps({"type": "object", "properties": {"name": {"const": tool.name},
                                                        "arguments": bounded_schema(tool.parameters)},
                       "required": ["name", "arguments"]})


def call_log_probability(runtime: Runtime, messages: list[Message]) -> float:
    """log P(the answer opens a call), the conversation described with its functions."""
    return runtime.score_options(runtime.chat_prompt(messages), [CALL_OPENER])[0]


def choose_function(runtime: Runtime, messages: list[Message], tools: list[Tool],
                    embedder: Embedder | None = None) -> Tool:
    """The function a call should use: the one whose name and description are nearest the user's last turn (the
    packaged sentence embedder, 18 of 20 right on the development questions where the 135M model's own scores of
    the names got 16 and its greedy decoding 9); the model's scores without an embedder."""
    if embedder is None:
        prompt = runtime.chat_prompt(messages)
        scores = runtime.score_options(prompt, [f'{{"name": "{t.name}"' for t in tools])
    else:
        vectors = embedder.encode([messages[-1]["content"]] +
                                  [f"{t.name.replace('_', ' ')}: {t.description}" for t in tools])
        scores = list(vectors[1:] @ vectors[0])
    return tools[max(range(len(tools)), key=lambda n: scores[n])]


def plan_call(runtime: Runtime, messages: list[Message], mode: str, tools: list[Tool], *,
              after_result: bool = False, embedder: Embedder | None = None) -> Tool | None:
    """The function to call in answer to `messages` (functions described in them), or None for a text answer:
    always a call for "required", never for "none" or, under "auto", right after results were handed over
    (`after_result`: a small model would call again); under "auto" a call when the model's own wish to open one
    clears the threshold."""
    if mode == "none" or (mode == "auto" and (after_result or
                                              call_log_probability(runtime, messages) < AUTO_LOG_THRESHOLD)):
        return None
    return tools[0] if len(tools) == 1 else choose_function(runtime, messages, tools, embedder)


def parse_call(text: str, tool: Tool) -> tuple[str, str] | None:
    """(name, arguments as JSON text) of a decoded call of `tool`, checked against its parameters; None when the
    text is no complete call (a budget that ran out)."""
    import jsonschema

    try:
        call = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(call, dict) or call.get("name") != tool.name or not isinstance(call.get("arguments"), dict):
        return None
    try:
        jsonschema.validate(call["arguments"], tool.parameters)
    except jsonschema.ValidationError:
        return None
    return tool.name, json.dumps(call["arguments"])


def call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]
