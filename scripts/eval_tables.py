"""Markdown tables for docs/BENCHMARKS.md from the JSON that scripts/run_benchmarks.sh leaves in docs/eval/.

Run: .venv/bin/python scripts/eval_tables.py > /tmp/tables.md
"""

import json
import sys
from pathlib import Path

ORDER = ["lamp1", "lamp2", "lamp3", "lamp4", "lamp5", "lamp7", "movielens-rating", "movielens-tag"]
LOWER = {"mae", "rmse"}


def table(data: dict) -> str:
    primary = data["primary_metric"]
    methods = data["methods"]
    metrics = [k for k in next(iter(methods.values())) if k not in ("relative_gain", "seconds_per_user", "adapter_mb")]
    best = (min if primary in LOWER else max)(m[primary] for n, m in methods.items() if n != "none")
    lines = [f"| method | {' | '.join(metrics)} | gain over none | s / user | adapter MB |",
             "|---" * (len(metrics) + 4) + "|"]
    for name, m in methods.items():
        gain = m["relative_gain"]
        cells = [f"**{m[k]:.3f}**" if k == primary and m[k] == best else f"{m[k]:.3f}" for k in metrics]
        gain_text = "n/a (none scores 0)" if gain is None else f"{gain:+.0%}"
        tail = f"{gain_text} | {m['seconds_per_user']:.1f} | {m['adapter_mb']:.2f}"
        lines.append(f"| {name} | {' | '.join(cells)} | {tail} |")
    return "\n".join(lines)


def main() -> None:
    folder = Path(__file__).resolve().parents[1] / "docs" / "eval"
    for task in ORDER:
        path = folder / f"{task}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        head = f"### {task}: {data['users']} users, {data['queries']} queries (primary: {data['primary_metric']})"
        sys.stdout.write(head + "\n\n")
        sys.stdout.write(table(data) + f"\n\nReport and plots: [docs/eval/{task}/report.md](eval/{task}/report.md)\n\n")


if __name__ == "__main__":
    main()
