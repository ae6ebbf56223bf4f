"""`pllm eval --task cloud`: the T-models side by side on the general questions of the routing set (what the
router sends to the T-tier), each answer scored by ROUGE-L against the set's reference, as the routing eval scores
them; the difference between two models paired by question, with its 95% bootstrap interval; seconds per answer.

    result = compare_t_models(settings, ["gemma-3-270m", "qwen2.5-1.5b"])
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pllm.bench.metrics import rouge_per_query
from pllm.bench.routing import ROUTING_SET
from pllm.config import Settings
from pllm.lm.foundation import EmbeddedFoundation
from pllm.lm.runtime import GenerationConfig, Usage
from pllm.reports import Report
from pllm.stats import Bootstrap, mean_of

SYSTEM = "You are a helpful, accurate assistant. Answer in one or two sentences."


def general_questions() -> list[dict[str, str]]:
    return list(json.loads(ROUTING_SET.read_text(encoding="utf-8"))["general"])


def compare_t_models(settings: Settings, models: Sequence[str], *, max_tokens: int = 64, limit: int | None = None,
                     tick: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Every model answers every general question (the first `limit`; greedy); scores, answers and seconds per
    model."""
    questions = general_questions()[:limit]
    rows: dict[str, dict[str, Any]] = {}
    for name in models:
        model = EmbeddedFoundation.from_settings(settings.model_copy(update={"foundation_model": name}))
        answers, seconds, tokens = [], [], 0
        try:
            for q in questions:
                usage, started = Usage(), time.perf_counter()
                messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q["question"]}]
                answers.append("".join(model.chat_stream(messages, GenerationConfig(max_tokens=max_tokens), usage))
                               .strip())
                seconds.append(time.perf_counter() - started)
                tokens += usage.completion_tokens
                tick()
        finally:
            model.runtime.close()
        scores = rouge_per_query(answers, [q["answer"] for q in questions])["rouge-L"]
        rows[name] = {"rougeL": float(np.mean(scores)), "per_question": [round(s, 4) for s in scores],
                      "answers": answers, "median_seconds": round(float(np.median(seconds)), 2),
                      "tokens_per_second": round(tokens / max(1e-9, sum(seconds)), 2)}
    boot = Bootstrap(len(questions), seed=settings.seed)
    for row in rows.values():
        row["rougeL_interval"] = [round(v, 4) for v in boot.interval(mean_of(np.array(row["per_question"])))]
    out: dict[str, Any] = {"task": "cloud", "questions": len(questions), "models": rows,
                           "question_texts": [q["question"] for q in questions]}
    if len(models) >= 2:
        first, last = (np.array(rows[m]["per_question"]) for m in (models[0], models[-1]))
        out["difference"] = {"of": f"{models[-1]} - {models[0]}",
                             "interval": [round(v, 4) for v in boot.difference_interval(mean_of(last),
                                                                                         mean_of(first))]}
    return out


def write_cloud_report(result: dict[str, Any], folder: Path, *, command: str) -> Path:
    names = list(result["models"])
    report = Report(f"The T-models on {result['questions']} general questions", command=command)
    rows = ["| model | ROUGE-L [95%] | median s / answer | tokens/s |", "|---|---|---|---|"]
    for name, row in result["models"].items():
        low, high = row["rougeL_interval"]
        rows.append(f"| {name} | {row['rougeL']:.3f} [{low:.3f}, {high:.3f}] | {row['median_seconds']} | "
                    f"{row['tokens_per_second']} |")
    report.add(*rows)
    if "difference" in result:
        report.add(f"Paired difference ({result['difference']['of']}): {result['difference']['interval']}")
    answers = ["| question | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for n, text in enumerate(result["question_texts"]):
        cells = [result["models"][m]["answers"][n].replace("|", "/").replace("\n", " ") for m in names]
        answers.append(f"| {text} | " + " | ".join(cells) + " |")
    report.add(*answers)
    return report.write(folder, result)
