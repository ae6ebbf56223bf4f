"""Markdown tables for docs/BENCHMARKS.md from the JSON that scripts/run_benchmarks.sh leaves in docs/eval/.

Run: .venv/bin/python scripts/eval_tables.py > /tmp/tables.md
     .venv/bin/python scripts/eval_tables.py --real yelp-a news-a   # the real-user tables: each method against the
                                                                    # simple references, paired, and its answers
"""

import json
import sys
from pathlib import Path

from pllm.bench.report import improvement_text

ORDER = ["lamp1", "lamp2", "lamp3", "lamp4", "lamp5", "lamp7", "movielens-rating", "movielens-tag"]
LOWER = {"mae", "rmse"}
LEARNED = ("model_weight",)  # what a method learned on the training users' tuning questions, not a metric


def table(data: dict) -> str:
    primary = data["primary_metric"]
    methods = data["methods"]
    skip = ("relative_gain", "seconds_per_user", "prepare_seconds", "adapter_mb", "intervals", "improvement_interval",
            *LEARNED)
    metrics = [k for k in next(iter(methods.values())) if k not in skip]
    best = (min if primary in LOWER else max)(m[primary] for n, m in methods.items() if n != "none")
    lines = [f"| method | {' | '.join(f'{k} [95% CI]' for k in metrics)} | gain over none | {primary} vs none "
             "[95% CI] | s / user | setup s | adapter MB |",
             "|---" * (len(metrics) + 6) + "|"]
    for name, m in methods.items():
        gain = m["relative_gain"]
        cells = []
        for k in metrics:
            low, high = m["intervals"][k]
            value = f"**{m[k]:.3f}**" if k == primary and m[k] == best else f"{m[k]:.3f}"
            cells.append(f"{value} [{low:.3f}, {high:.3f}]")
        gain_text = "n/a (none scores 0)" if gain is None else f"{gain:+.0%}"
        versus = "(baseline)" if name == "none" else improvement_text(*m["improvement_interval"])
        timing = f"{m['seconds_per_user']:.1f} | {m['prepare_seconds']:.1f} | {m['adapter_mb']:.2f}"
        tail = f"{gain_text} | {versus} | {timing}"
        lines.append(f"| {name} | {' | '.join(cells)} | {tail} |")
    learned = [f"`{name}` {k} = {m[k]:g}" for name, m in methods.items() for k in LEARNED if k in m]
    if learned:
        lines += ["", "Learned on the training users' tuning questions: " + ", ".join(learned) + "."]
    return "\n".join(lines)


def real_table(data: dict) -> str:
    """One row per method: the primary metric, its paired intervals against stats, majority and task, its answers."""
    primary, methods = data["primary_metric"], data["methods"]
    refs = ("stats", "majority", "task")
    golds = data.get("gold_answers", {})
    labels = list(golds)[:6]
    head = [f"{primary} [95%]", *(f"vs {r}" for r in refs)]
    head += ["answers (" + " / ".join(labels) + ")"] if golds else []
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    if golds:
        lines.append("| gold | | | | | " + " / ".join(str(golds[k]) for k in labels) + " |")
    for name, m in methods.items():
        low, high = m["intervals"][primary]
        versus = [improvement_text(*m["improvement_over"][r]) if r in m.get("improvement_over", {}) else ""
                  for r in refs]
        cells = [f"{m[primary]:.3f} [{low:.3f}, {high:.3f}]", *versus]
        if golds:
            cells.append(" / ".join(str(m.get("answers", {}).get(k, 0)) for k in labels))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    folder = Path(__file__).resolve().parents[1] / "docs" / "eval"
    if sys.argv[1:2] == ["--real"]:
        for name in sys.argv[2:]:
            data = json.loads((folder / f"{name}.json").read_text())
            sys.stdout.write(f"#### {name}: {data['users']} people, {data['queries']} queries\n\n{data['protocol']}\n\n"
                             + real_table(data) + "\n\n")
        return
    for task in ORDER:
        path = folder / f"{task}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        if "protocol" not in data:  # written before the evaluation protocol: not comparable, not shown
            sys.stdout.write(f"### {task}: not regenerated under the current protocol yet\n\n")
            continue
        head = f"### {task}: {data['users']} users, {data['queries']} queries (primary: {data['primary_metric']})"
        sys.stdout.write(head + "\n\n" + data["protocol"] + "\n\n")
        sys.stdout.write(table(data) + f"\n\nReport and plots: [docs/eval/{task}/report.md](eval/{task}/report.md)\n\n")


if __name__ == "__main__":
    main()
