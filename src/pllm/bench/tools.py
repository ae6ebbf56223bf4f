"""`pllm eval --task tools`: structured output and function calls as an app meets them, through a real `pllm serve`
app on loopback (base model, no vault), over HTTP.

- `auto`: labelled questions (`data/tools/`: ones a tool answers, ones it does not), each sent with the four tools
  and `tool_choice: auto`; the two error rates (a call where none was due, no call where one was) with their 95%
  intervals, and the right function among the calls made. Beside it, each question's log P(call) from the model in
  process, and the threshold that would make the fewest errors on this set (to choose it on development data only).
- `required`: every tool question with `tool_choice: required`: valid calls (a known function, arguments that
  parse and validate against its parameters).
- `json_schema`: 20 varied prompts, each with its schema: answers that parse and validate.

    result = run_tools(settings, questions_file)
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pllm.bench.lamp import FormatError
from pllm.config import Settings
from pllm.reports import Report
from pllm.stats import Bootstrap, mean_of

TOOLS_DIR = Path(__file__).resolve().parents[3] / "data" / "tools"
TOOLS_FILE = TOOLS_DIR / "tools.json"
DEFAULT_QUESTIONS = TOOLS_DIR / "tool-questions-heldout.jsonl"
SCHEMA_PROMPTS = TOOLS_DIR / "json-schema-prompts.jsonl"


def load_questions(path: Path, tools: list[str]) -> list[dict[str, Any]]:
    """A JSON-lines file of {"question": text, "tool": one of `tools` or null}; FormatError naming the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: cannot read it ({exc})") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ok = isinstance(row["question"], str) and (row["tool"] is None or row["tool"] in tools)
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise FormatError(f"{path}:{n}: expected {{\"question\": text, \"tool\": one of {', '.join(tools)} "
                              "or null}")
        rows.append(row)
    if not rows:
        raise FormatError(f"{path}: no questions")
    return rows


def _rate(hits: list[bool], seed: int) -> dict[str, Any]:
    values = np.array(hits, dtype=float)
    low, high = Bootstrap(len(values), seed=seed).interval(mean_of(values)) if len(values) else (math.nan, math.nan)
    return {"rate": float(values.mean()) if len(values) else math.nan, "of": len(values),
            "interval": [round(low, 3), round(high, 3)]}


def best_threshold(log_probs: list[float], needs: list[bool]) -> float:
    """The log P(call) threshold with the fewest errors on these questions (ties: the midpoint of the best gap)."""
    cuts = sorted(set(log_probs))
    candidates = [cuts[0] - 1.0] + [(a + b) / 2 for a, b in itertools.pairwise(cuts)] + [cuts[-1] + 1.0]

    def errors(t: float) -> int:
        return sum((lp >= t) != need for lp, need in zip(log_probs, needs, strict=True))

    return min(candidates, key=errors)


def _valid(arguments: str, parameters: dict[str, Any]) -> bool:
    import jsonschema

    try:
        jsonschema.validate(json.loads(arguments), parameters)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    return True


def run_tools(settings: Settings, questions_file: Path = DEFAULT_QUESTIONS, *,
              tick: Callable[[str], None] = lambda label: None) -> dict[str, Any]:
    import httpx

    from pllm.api.app import create_app
    from pllm.http_serving import serve_background
    from pllm.lm import tools
    from pllm.lm.runtime import Runtime

    offered = json.loads(TOOLS_FILE.read_text(encoding="utf-8"))
    parameters = {t["function"]["name"]: t["function"]["parameters"] for t in offered}
    questions = load_questions(questions_file, list(parameters))
    prompts = [json.loads(line) for line in SCHEMA_PROMPTS.read_text(encoding="utf-8").splitlines() if line.strip()]

    runtime = Runtime.from_settings(settings)  # the decision's score, in process (what the server thresholds)
    try:
        described = tools.parse_tools(offered)
        log_probs = [tools.call_log_probability(runtime, tools.with_tools(
            [{"role": "user", "content": q["question"]}], described)) for q in questions]
    finally:
        runtime.close()

    settings = settings.model_copy(update={"api_token": ""})
    auto, required, schema_answers = [], [], []
    with serve_background(create_app(settings)) as url, httpx.Client(base_url=url, timeout=300) as http:
        def chat(body: dict[str, Any]) -> dict[str, Any]:
            response = http.post("/v1/chat/completions", json={"temperature": 0, **body})  # budget: the default
            response.raise_for_status()
            return dict(response.json()["choices"][0])

        for n, q in enumerate(questions):
            tick(f"auto {n + 1}/{len(questions)}")
            choice = chat({"messages": [{"role": "user", "content": q["question"]}], "tools": offered,
                           "tool_choice": "auto"})
            calls = choice["message"].get("tool_calls") or []
            auto.append({"question": q["question"], "tool": q["tool"],
                         "called": calls[0]["function"]["name"] if calls else None,
                         "content": choice["message"].get("content")})
        for n, q in enumerate(x for x in questions if x["tool"]):
            tick(f"required {n + 1}")
            choice = chat({"messages": [{"role": "user", "content": q["question"]}], "tools": offered,
                           "tool_choice": "required"})
            calls = choice["message"].get("tool_calls") or []
            call = calls[0]["function"] if calls else {"name": None, "arguments": ""}
            required.append({"question": q["question"], "tool": q["tool"], "called": call["name"],
                             "arguments": call["arguments"], "finish_reason": choice["finish_reason"],
                             "valid": call["name"] in parameters and _valid(str(call["arguments"]),
                                                                             parameters[call["name"]])})
        for n, p in enumerate(prompts):
            tick(f"json_schema {n + 1}/{len(prompts)}")
            choice = chat({"messages": [{"role": "user", "content": p["prompt"]}], "max_tokens": 256,
                           "response_format": {"type": "json_schema",
                                               "json_schema": {"name": "answer", "schema": p["schema"],
                                                               "strict": True}}})
            text = choice["message"]["content"] or ""
            schema_answers.append({"prompt": p["prompt"], "answer": text, "valid": _valid(text, p["schema"])})

    needs = [q["tool"] is not None for q in questions]
    seed = settings.seed
    return {
        "task": "tools", "questions": str(questions_file.name),
        "auto": {
            "false_call": _rate([a["called"] is not None for a in auto if a["tool"] is None], seed),
            "missed_call": _rate([a["called"] is None for a in auto if a["tool"] is not None], seed),
            "wrong_function": _rate([a["called"] != a["tool"] for a in auto if a["tool"] and a["called"]], seed),
            "threshold": round(tools.AUTO_LOG_THRESHOLD, 3),
            "best_threshold_on_this_set": round(best_threshold(log_probs, needs), 3),
            "answers": [{**a, "log_p_call": round(lp, 3)} for a, lp in zip(auto, log_probs, strict=True)],
        },
        "required": {"valid": sum(r["valid"] for r in required), "of": len(required),
                     "right_function": sum(r["called"] == r["tool"] for r in required), "calls": required},
        "json_schema": {"valid": sum(a["valid"] for a in schema_answers), "of": len(schema_answers),
                        "answers": schema_answers},
    }


def write_tools_report(result: dict[str, Any], folder: Path, *, command: str, machine: str) -> Path:
    auto, req, js = result["auto"], result["required"], result["json_schema"]
    report = Report(f"Structured output and function calls ({result['questions']})", command=command)

    def cell(r: dict[str, Any]) -> str:
        return f"{r['rate']:.3f} [{r['interval'][0]:.3f}, {r['interval'][1]:.3f}] of {r['of']}"

    report.add(f"Machine: {machine}.")
    report.add("| check | result |", "|---|---|",
               f"| `json_schema`: answers valid against their schema | {js['valid']} of {js['of']} |",
               f"| `tool_choice: required`: valid calls | {req['valid']} of {req['of']} "
               f"(right function: {req['right_function']}) |",
               f"| `auto`: a call where none was due | {cell(auto['false_call'])} |",
               f"| `auto`: no call where one was due | {cell(auto['missed_call'])} |",
               f"| `auto`: wrong function among the calls made | {cell(auto['wrong_function'])} |",
               f"| `auto` threshold (log P(call)) | {auto['threshold']} (this set's best: "
               f"{auto['best_threshold_on_this_set']}) |")
    rows = ["| question | due | called | log P(call) |", "|---|---|---|---|"]
    rows += [f"| {a['question'].replace('|', '/')} | {a['tool'] or '-'} | {a['called'] or '-'} | {a['log_p_call']} |"
             for a in auto["answers"]]
    report.add(*rows)
    return report.write(folder, result)
