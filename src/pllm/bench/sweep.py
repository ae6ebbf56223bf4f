"""`pllm eval --history 0,1,2,4,8`: the same users evaluated with 0, 1, 2, ... of their earlier items, every method at
every size, beside the task model (the population head) with paired intervals: how a method does for a user it
barely knows, and when the user's own data starts to pay. What is trained on the training users alone (the task
head) is trained once and shared by every size. The zero-shot model (`none`) reads no history, so it runs only when
named.

    rows = run_history_sweep(task, data, [0, 1, 2, 4, 8], methods, settings)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pllm.bench.data import EvalData, low_data
from pllm.bench.report import improvement_text, with_interval
from pllm.bench.runner import run_eval
from pllm.bench.tasks.base import Task
from pllm.config import Settings
from pllm.errors import UsageError
from pllm.reports import Report

REFERENCE = "task"  # what every method is paired against at each size


def history_sizes(value: str | None) -> list[int] | None:
    """`--history`: one size ("4") or a sweep ("0,1,2,4,8"); None when not given."""
    if value is None:
        return None
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--history takes a number of items or a list like 0,1,2,4,8, not {value!r}") from None
    if not sizes or any(n < 0 for n in sizes) or len(set(sizes)) != len(sizes):
        raise UsageError(f"--history takes distinct numbers of items, 0 or more, not {value!r}")
    return sorted(sizes)


def run_history_sweep(task: Task, data: EvalData, sizes: list[int], methods: list[str], settings: Settings, *,
                      seed: int = 0, tick: Callable[[str, int, int], None] = lambda *_: None) -> dict[str, Any]:
    methods = [REFERENCE, *[m for m in methods if m != REFERENCE]]  # first: the gains are over it
    shared: dict[str, Any] = {}
    rows = []
    for size in sizes:
        def sized(method: str, done: int, total: int, size: int = size) -> None:
            tick(f"{size} items: {method}", done, total)

        result = run_eval(task, low_data(data, size), methods, settings, seed=seed, shared=shared, tick=sized,
                          baseline="none" in methods)  # zero-shot reads no history: only when asked for
        primary = result.primary
        for m in result.methods:
            versus = m.versus.get(REFERENCE) if m.name != REFERENCE else None
            rows.append({"history": size, "method": m.name, "value": round(m.metrics[primary], 4),
                         "interval": [round(v, 4) for v in m.intervals[primary]],
                         "vs_task": [round(v, 4) for v in versus] if versus else None,
                         "learned": m.learned})
    return {"task": task.name, "primary": primary, "sizes": sizes, "queries": len(data.evaluated),
            "users": len({q.user_id for q in data.evaluated}), "protocol": data.protocol, "rows": rows}


def sweep_table(result: dict[str, Any]) -> list[str]:
    primary = result["primary"]
    lines = [f"| items | method | {primary} [95% CI] | vs `task`, paired |", "|---:|---|---|---|"]
    for r in result["rows"]:
        vs = improvement_text(*r["vs_task"]) if r["vs_task"] else "(reference)" if r["method"] == REFERENCE else ""
        lines.append(f"| {r['history']} | {r['method']} | {with_interval(r['value'], r['interval'])} | {vs} |")
    return lines


def write_sweep_report(result: dict[str, Any], folder: Path, *, command: str, machine: str) -> Path:
    report = Report(f"pllm eval {result['task']}: {result['users']} users, {result['queries']} queries, by how many "
                    "earlier items each user has", command=command, machine=machine)
    report.add(*sweep_table(result))
    report.add(f"Every size evaluates the same users and queries, each keeping only their N most recent earlier items "
               f"for every method; the task head is trained once on the training users. {result['protocol']}")
    methods = list(dict.fromkeys(r["method"] for r in result["rows"]))

    def draw(ax: Any) -> None:
        for name in methods:
            mine = [r for r in result["rows"] if r["method"] == name]
            xs = [r["history"] for r in mine]
            ys = [r["value"] for r in mine]
            errors = [[y - r["interval"][0] for y, r in zip(ys, mine, strict=True)],
                      [r["interval"][1] - y for y, r in zip(ys, mine, strict=True)]]
            ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=name)
        ax.set_xlabel("earlier items of the user")
        ax.set_ylabel(result["primary"])
        ax.legend(fontsize=8)

    report.plot("history.png", draw)
    return report.write(folder, result)
