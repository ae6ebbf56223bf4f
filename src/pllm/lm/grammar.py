"""Constrained decoding: the llama.cpp grammar of a JSON Schema, and the schema bounded so that an answer under it
ends within its token budget.

A small model under a grammar can loop inside a string or a list ("Ana", "Ana", "Ana", ...) until its budget runs
out, and a cut answer is no JSON at all. `bounded_schema` caps what the schema leaves open (a string's length, a
list's items, a pattern's repeats) with limits every valid answer of that size keeps: the answer may be shorter
than the schema allows, never invalid against it.

    grammar = schema_grammar(json.dumps(bounded_schema(schema)))
"""

from __future__ import annotations

import functools
from typing import Any

from pllm.errors import UsageError

MAX_STRING = 160  # characters, for a string the schema leaves unbounded
MAX_ITEMS = 12  # for a list the schema leaves unbounded
MAX_REPEAT = 48  # for a pattern's +, * and {n,}
LITERAL_KEYS = {"const", "enum", "default", "examples"}  # values, not schemas: kept as they are


@functools.lru_cache(maxsize=32)
def schema_grammar(schema: str) -> Any:
    """The llama.cpp grammar of a JSON Schema (converted once per schema): what decoding may produce."""
    from llama_cpp.llama_grammar import LlamaGrammar

    try:
        return LlamaGrammar.from_json_schema(schema, verbose=False)
    except (ValueError, KeyError, TypeError, RuntimeError, AssertionError) as exc:  # the converter asserts too
        raise UsageError(f"a JSON schema the grammar converter cannot take: {exc}") from None


def bounded_pattern(pattern: str) -> str:
    """`pattern` with its unbounded repeats (`+`, `*`, `{n,}`) capped at MAX_REPEAT; escapes and classes kept."""
    out: list[str] = []
    n, in_class = 0, False
    while n < len(pattern):
        c = pattern[n]
        if c == "\\":
            out.append(pattern[n:n + 2])
            n += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c in "+*":
            out.append(f"{{{int(c == '+')},{MAX_REPEAT}}}")
            n += 1
            continue
        elif c == "{":
            close = pattern.find("}", n)
            body = pattern[n + 1:close] if close > 0 else ""
            low = body[:-1] if body.endswith(",") else ""
            if low.isdigit():
                out.append(f"{{{low},{max(int(low), MAX_REPEAT)}}}")
                n = close + 1
                continue
        out.append(c)
        n += 1
    return "".join(out)


def bounded_schema(schema: Any) -> Any:
    """A copy of `schema` whose strings, lists and patterns are bounded (see the module's note)."""
    if isinstance(schema, list):
        return [bounded_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: value if key in LITERAL_KEYS else bounded_schema(value) for key, value in schema.items()}
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if "string" in types and not {"enum", "const", "format"} & schema.keys():
        if "pattern" in schema:
            out["pattern"] = bounded_pattern(str(schema["pattern"]))
        elif "maxLength" not in schema:
            out["maxLength"] = max(MAX_STRING, int(schema.get("minLength", 0)))
    if "array" in types and "maxItems" not in schema:
        out["maxItems"] = max(MAX_ITEMS, int(schema.get("minItems", 0)))
    return out
