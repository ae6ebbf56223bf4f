"""The evaluation report: a markdown table, two plots, and the predictions in LaMP's outputs format.

    write_report(result, Path("report/"), command="pllm eval --task lamp2 --synthetic small")
"""

from __future__ import annotations

from pathlib import Path

from pllm.bench.lamp import write_outputs
from pllm.bench.metrics import LOWER_IS_BETTER
from pllm.bench.runner import BASELINE, EvalResult, by_user


def gain_text(value: float | None) -> str:
    return "n/a (baseline 0)" if value is None else f"{value:+.1%}"


def markdown_table(result: EvalResult) -> str:
    metrics = list(result.methods[0].metrics)
    head = ["method", *metrics, f"gain ({result.primary})", "s / user", "setup s", "adapter MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in result.methods:
        cells = [m.name, *[f"{m.metrics[k]:.3f}" for k in metrics], gain_text(m.relative_gain.get(result.primary)),
                 f"{m.seconds_per_user:.2f}", f"{m.prepare_seconds:.1f}", f"{m.adapter_mb:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def learned_lines(result: EvalResult) -> list[str]:
    """What methods learned on held-out data (never the evaluated golds), one line each."""
    lines = [f"- `{m.name}`: " + ", ".join(f"{k} = {v:g}" for k, v in m.learned.items())
             for m in result.methods if m.learned]
    return ["Learned on held-out data from the users' own past:", "", *lines, ""] if lines else []


def _plots(result: EvalResult, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    primary = result.primary
    names = [m.name for m in result.methods]
    values = [m.metrics[primary] for m in result.methods]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    colors = ["#999999" if n == BASELINE else "#2a7ab9" for n in names]
    ax.bar(names, values, color=colors)
    ax.set_ylabel(primary + (" (lower is better)" if primary in LOWER_IS_BETTER else ""))
    ax.set_title(f"{result.task.name}: {primary} per method ({BASELINE} in grey)")
    for x, v in enumerate(values):
        ax.annotate(f"{v:.2f}", (x, v), ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "methods.png", dpi=120)
    plt.close(fig)

    users = by_user(result.questions)
    sizes = {u: len(qs[0].profile) for u, qs in users.items()}
    base = result.method(BASELINE).per_user
    sign = -1 if primary in LOWER_IS_BETTER else 1
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for m in result.methods:
        if m.name == BASELINE:
            continue
        points = sorted((sizes[u], sign * (m.per_user[u] - base[u])) for u in users)
        ax.plot([p[0] for p in points], [p[1] for p in points], "o", alpha=0.7, label=m.name)
    ax.axhline(0, color="#999999", linewidth=1)
    ax.set_xlabel("profile size (items)")
    ax.set_ylabel(f"{primary} gain over {BASELINE}, per user")
    ax.set_title(f"{result.task.name}: gain against profile size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "gain_vs_profile.png", dpi=120)
    plt.close(fig)
    return ["methods.png", "gain_vs_profile.png"]


def machine_line(result: EvalResult) -> str:
    """Where the figures were measured: speeds differ ~2x between our machines, and training precision with them."""
    cpu = result.machine.get("cpu", {})
    return (f"Measured on {cpu.get('model', 'an unrecorded CPU')} ({cpu.get('cores', '?')} cores; "
            f"{' '.join(cpu.get('flags', []))}), adapters trained in {result.machine.get('train_dtype', '?')}.")


def write_report(result: EvalResult, folder: Path, *, command: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lamp = result.task.lamp
    write_outputs(folder / "golds.json", lamp, {q.id: str(q.gold) for q in result.questions})
    for m in result.methods:
        write_outputs(folder / f"predictions-{m.name}.json", lamp, m.predictions)
    images = _plots(result, folder)
    users = len(by_user(result.questions))
    text = "\n".join([
        f"# pllm eval: {result.task.name}",
        "",
        f"{users} users, {len(result.questions)} queries. Reproduce with:",
        "",
        f"    {command}",
        "",
        machine_line(result),
        "",
        markdown_table(result),
        "",
        f"Gain is relative to `{BASELINE}` (the base model, zero-shot) on {result.primary}; positive is better. "
        "Predictions are in LaMP's outputs format: `predictions-<method>.json` beside `golds.json`.",
        "",
        *learned_lines(result),
        *[f"![{name}]({name})" for name in images],
        "",
    ])
    path = folder / "report.md"
    path.write_text(text, encoding="utf-8")
    return path
