"""The evaluation report: a markdown table, two plots, and the predictions in LaMP's outputs format.

    write_report(result, Path("report/"), command="pllm eval --task lamp2 --synthetic small")
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pllm.bench.lamp import by_user, write_outputs
from pllm.bench.metrics import LOWER_IS_BETTER
from pllm.bench.runner import BASELINE, EvalResult
from pllm.reports import Report


def gain_text(value: float | None) -> str:
    return "n/a (baseline 0)" if value is None else f"{value:+.1%}"


def with_interval(value: float, interval: tuple[float, float] | list[float], digits: int = 3) -> str:
    low, high = interval
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def improvement_text(low: float, high: float) -> str:
    """The paired interval of the improvement over the baseline, and whether these queries can tell them apart."""
    verdict = "better" if low > 0 else "worse" if high < 0 else "no clear difference"
    return f"[{low:+.3f}, {high:+.3f}] {verdict}"


def markdown_table(result: EvalResult) -> str:
    metrics = list(result.methods[0].metrics)
    head = ["method", *[f"{k} [95% CI]" for k in metrics], f"gain ({result.primary})",
            f"{result.primary} vs {BASELINE} [95% CI]", "s / user", "setup s", "adapter MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in result.methods:
        versus = "(baseline)" if m.name == BASELINE else improvement_text(*m.improvement)
        cells = [m.name, *[with_interval(m.metrics[k], m.intervals[k]) for k in metrics],
                 gain_text(m.relative_gain.get(result.primary)), versus,
                 f"{m.seconds_per_user:.2f}", f"{m.prepare_seconds:.1f}", f"{m.adapter_mb:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


LEARNED_WHERE = "Learned on the training users' tuning questions (never an evaluated user, never an evaluated gold):"


def learned_lines(result: EvalResult) -> list[str]:
    """What methods learned on the training users' tuning questions, one line each."""
    lines = [f"- `{m.name}`: " + ", ".join(f"{k} = {v:g}" for k, v in m.learned.items())
             for m in result.methods if m.learned]
    return [LEARNED_WHERE, "", *lines, ""] if lines else []


def paired_lines(result: EvalResult) -> list[str]:
    """Each method against the one it builds on (cdcda against peft), paired on the same queries."""
    lines = [f"- `{m.name}` against `{m.builds_on}` on {result.primary}: {improvement_text(*m.over_base)}"
             for m in result.methods if m.over_base]
    return ["Against the method each builds on (95% paired bootstrap interval of the improvement):", "", *lines,
            ""] if lines else []


def versus_lines(result: EvalResult) -> list[str]:
    """Each method against the simple references in the run (the user's statistics, the majority, the task model),
    paired on the same queries."""
    lines = [f"- `{m.name}`: " + "; ".join(f"vs `{ref}` {improvement_text(*iv)}" for ref, iv in m.versus.items())
             for m in result.methods if m.versus and m.name != BASELINE]
    return [f"Against the simple references, on {result.primary} (95% paired bootstrap interval of the "
            "improvement):", "", *lines, ""] if lines else []


def answer_lines(result: EvalResult) -> list[str]:
    """Label tasks: how often each method gave each answer, beside the golds (a method that answers one label for
    every query learned the prior, not the task)."""
    if result.task.kind == "generation":
        return []
    golds = Counter(str(q.gold) for q in result.questions)
    labels = [label for label, _ in golds.most_common()]
    given = {m.name: m.label_counts() for m in result.methods}
    labels += sorted({label for counts in given.values() for label in counts} - set(labels))
    shown = labels[:12]
    lines = ["Answers given, per label (the golds first):", "",
             "| | " + " | ".join(f"`{label}`" for label in shown) + " |", "|---" * (len(shown) + 1) + "|",
             "| gold | " + " | ".join(str(golds[label]) for label in shown) + " |"]
    lines += ["| " + name + " | " + " | ".join(str(counts.get(label, 0)) for label in shown) + " |"
              for name, counts in given.items()]
    return [*lines, ""]


def cost_lines(result: EvalResult) -> list[str]:
    """What methods spent beyond the device, per user (CDCDA's T-tier round trips)."""
    lines = [f"- `{m.name}`: " + ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in m.cost.items())
             for m in result.methods if m.cost]
    return ["Spent beyond the device, per user (mean):", "", *lines, ""] if lines else []


def _methods_plot(result: EvalResult) -> Any:
    primary = result.primary
    names = [m.name for m in result.methods]
    values = [m.metrics[primary] for m in result.methods]
    errors = [[v - m.intervals[primary][0] for v, m in zip(values, result.methods, strict=True)],
              [m.intervals[primary][1] - v for v, m in zip(values, result.methods, strict=True)]]

    def draw(ax: Any) -> None:
        colors = ["#999999" if n == BASELINE else "#2a7ab9" for n in names]
        ax.bar(names, values, color=colors, yerr=errors, capsize=3, ecolor="#333333")
        ax.set_ylabel(primary + (" (lower is better)" if primary in LOWER_IS_BETTER else ""))
        ax.set_title(f"{result.task.name}: {primary} per method, 95% bootstrap CI ({BASELINE} in grey)", fontsize=10)
        for x, v in enumerate(values):
            ax.annotate(f"{v:.2f}", (x, v), ha="center", va="bottom", fontsize=8)

    return draw


def _gain_plot(result: EvalResult) -> Any:
    primary = result.primary
    users = by_user(result.questions)
    sizes = {u: len(qs[0].profile) for u, qs in users.items()}
    base = result.method(BASELINE).per_user
    sign = -1 if primary in LOWER_IS_BETTER else 1

    def draw(ax: Any) -> None:
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

    return draw


def machine_line(result: EvalResult) -> str:
    """Where the figures were measured: speeds differ ~2x between our machines, and training precision with them."""
    cpu = result.machine.get("cpu", {})
    return (f"Measured on {cpu.get('model', 'an unrecorded CPU')} ({cpu.get('cores', '?')} cores; "
            f"{' '.join(cpu.get('flags', []))}), adapters trained in {result.machine.get('train_dtype', '?')}.")


def ready_folder(folder: Path) -> None:
    """Create the report folder and prove it writable, before an evaluation spends its minutes (an OSError names
    the path in one line)."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / ".pllm-write-test"
    probe.write_bytes(b"")
    probe.unlink()


def write_report(result: EvalResult, folder: Path, *, command: str) -> Path:
    """report.md with the tables and plots, results.json, and the predictions in LaMP's outputs format."""
    folder.mkdir(parents=True, exist_ok=True)
    lamp = result.task.lamp
    write_outputs(folder / "golds.json", lamp, {q.id: str(q.gold) for q in result.questions})
    for m in result.methods:
        write_outputs(folder / f"predictions-{m.name}.json", lamp, m.predictions)
    users = len(by_user(result.questions))
    report = Report(f"pllm eval: {result.task.name}", command=command, machine=machine_line(result))
    report.add(f"{users} users, {len(result.questions)} queries. {result.protocol}")
    report.add(markdown_table(result))
    report.add(f"Gain is relative to `{BASELINE}` (the base model, zero-shot) on {result.primary}; positive is better. "
               f"Intervals are 95% percentile bootstraps over the {len(result.questions)} queries (1000 resamples, the "
               f"same for every method, so the interval against `{BASELINE}` is paired). Predictions are in LaMP's "
               "outputs format: `predictions-<method>.json` beside `golds.json`.")
    for lines in (learned_lines(result), paired_lines(result), versus_lines(result), answer_lines(result),
                  cost_lines(result)):
        if lines:
            report.add(*lines)
    report.plot("methods.png", _methods_plot(result), size=(7, 3.6))
    report.plot("gain_vs_profile.png", _gain_plot(result), size=(7, 3.6))
    return report.write(folder, result.as_json())
