"""Function calls and bounded grammars without a server: the schema bounds that keep every answer valid, the
conversation as the model reads it, and the calls that parse or do not."""

from __future__ import annotations

import json

import jsonschema
import pytest

from pllm.lm import tools
from pllm.lm.grammar import MAX_STRING, bounded_pattern, bounded_schema, schema_grammar
from pllm.lm.runtime import GenerationConfig, Runtime

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
SEND = {"type": "function", "function": {"name": "send_message", "description": "Text a contact", "parameters": {
    "type": "object", "properties": {"to": {"type": "string"}, "text": {"type": "string"}},
    "required": ["to", "text"]}}}


def test_patterns_lose_only_their_unbounded_repeats() -> None:
    assert bounded_pattern("^[A-Za-z]+$") == "^[A-Za-z]{1,48}$"
    assert bounded_pattern(r"^\d{3,}-[+*]*\+x?$") == r"^\d{3,48}-[+*]{0,48}\+x?$"  # classes and escapes kept
    assert bounded_pattern("a{2}b{1,3}") == "a{2}b{1,3}"


def test_a_bounded_schema_only_narrows() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {
        "type": "string", "maxLength": 5}}, "kind": {"type": "string", "enum": ["a", "b"]},
        "fixed": {"const": {"type": "string"}}}}
    bounded = bounded_schema(schema)
    assert bounded["properties"]["name"]["maxLength"] == MAX_STRING
    assert bounded["properties"]["tags"]["maxItems"] == 12 and bounded["properties"]["tags"]["items"]["maxLength"] == 5
    assert bounded["properties"]["kind"] == schema["properties"]["kind"]
    assert bounded["properties"]["fixed"] == {"const": {"type": "string"}}  # a value, not a schema
    answer = {"name": "x" * MAX_STRING, "tags": ["a"] * 12, "kind": "a", "fixed": {"type": "string"}}
    jsonschema.validate(answer, bounded)
    jsonschema.validate(answer, schema)
    schema_grammar(json.dumps(bounded))  # llama.cpp's converter takes it


def test_a_looping_answer_still_ends_as_valid_json(runtime: Runtime) -> None:
    """The 135M model repeats a name in an unbounded list until its budget runs out; bounded, the list closes."""
    schema = {"type": "object", "properties": {"given_names": {"type": "array", "items": {"type": "string"}},
                                               "surname": {"type": "string"}},
              "required": ["given_names", "surname"], "additionalProperties": False}
    messages = [{"role": "user", "content": "Split the full name 'Ana Lucia Ferreira' into given names and surname."}]
    text = runtime.chat(messages, GenerationConfig(max_tokens=256, temperature=0,
                                                   json_schema=json.dumps(bounded_schema(schema)))).text
    jsonschema.validate(json.loads(text), schema)


def test_the_conversation_hands_results_over_with_the_question() -> None:
    messages = [{"role": "user", "content": "Weather in Oslo?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                                      "arguments": '{"city": "Oslo"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "4 C, rain"}]
    read = tools.transcript(messages)
    assert [m["role"] for m in read] == ["user", "assistant", "user"]
    assert '"name": "get_weather"' in read[1]["content"] and read[1]["content"].startswith(tools.CALL_OPENER)
    assert "Result of get_weather: 4 C, rain" in read[2]["content"] and read[2]["content"].endswith("Weather in Oslo?")
    with pytest.raises(tools.ToolError, match="call_9"):
        tools.transcript([*messages[:2], {"role": "tool", "tool_call_id": "call_9", "content": "x"}])


def test_choices_and_calls() -> None:
    offered = tools.parse_tools([WEATHER, SEND])
    assert tools.chosen(offered, None)[0] == "auto" and tools.chosen([], None)[0] == "none"
    mode, callable_ = tools.chosen(offered, {"type": "function", "function": {"name": "send_message"}})
    assert mode == "required" and [t.name for t in callable_] == ["send_message"]
    for bad in ({"type": "function", "function": {"name": "nope"}}, "sometimes"):
        with pytest.raises(tools.ToolError):
            tools.chosen(offered, bad)
    with pytest.raises(tools.ToolError, match="share a name"):
        tools.parse_tools([WEATHER, WEATHER])
    assert tools.parse_call('{"name": "get_weather", "arguments": {"city": "Oslo"}}', offered[0]) == \
        ("get_weather", '{"city": "Oslo"}')
    assert tools.parse_call('{"name": "get_weather", "arguments": {}}', offered[0]) is None  # city is required
    assert tools.parse_call('{"name": "get_weather", "argu', offered[0]) is None  # cut short


def test_the_model_chooses_to_call_or_not_and_which(runtime: Runtime) -> None:
    offered = tools.parse_tools([WEATHER, SEND])

    def plan(question: str, mode: str = "auto") -> str | None:
        messages = tools.with_tools([{"role": "user", "content": question}], offered)
        tool = tools.plan_call(runtime, messages, mode, offered)
        return None if tool is None else tool.name

    assert plan("Text Maria that I'm running late") == "send_message"
    assert plan("Who wrote Hamlet?") is None
    assert plan("Who wrote Hamlet?", "required") is not None
    assert plan("Text Maria that I'm running late", "none") is None
