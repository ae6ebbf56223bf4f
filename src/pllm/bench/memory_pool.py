"""Pool memory runs of several sets into one paired comparison: a design change counts when it wins on each set or
on their pooled questions (issue 36). Each run's results.json holds every question's rank per method.

    python -m pllm.bench.memory_pool docs/eval/memory-locomo docs/eval/memory-beam-100k docs/eval/memory-realmem \
        --report docs/eval/memory-pooled
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pllm.bench.report import improvement_text, with_interval
from pllm.errors import UsageError
from pllm.reports import Report
from pllm.stats import Bootstrap, mean_of

BASELINE = "bm25"
KS = (3, 10)


def _ranks(folder: Path) -> tuple[str, list[dict[str, Any]]]:
    data = json.loads((folder / "results.json").read_text())
    if "ranks" not in data:
        raise UsageError(f"{folder}/results.json has no per-question ranks: rerun its `pllm eval --task memory`")
    return folder.name, data["ranks"]


def _hits(ranks: list[dict[str, Any]], method: str, k: int) -> np.ndarray:
    return np.array([float(r[method] is not None and r[method] <= k) for r in ranks])


def pool(folders: list[Path]) -> dict[str, Any]:
    """Per set and pooled: recall@k per method, its ratio to bm25's, and the paired interval against bm25."""
    runs = [_ranks(f) for f in folders]
    methods = [m for m in runs[0][1][0] if m != "id" and all(m in r[1][0] for r in runs)]
    out: dict[str, Any] = {"sets": {}, "methods": methods}
    for name, ranks in [*runs, ("pooled", [r for _, rs in runs for r in rs])]:
        boot = Bootstrap(len(ranks), seed=0)
        row: dict[str, Any] = {"questions": len(ranks)}
        for k in KS:
            base = _hits(ranks, BASELINE, k)
            for m in methods:
                hits = _hits(ranks, m, k)
                row[f"{m}@{k}"] = round(float(hits.mean()), 4)
                row[f"{m}@{k}_interval"] = [round(v, 4) for v in boot.interval(mean_of(hits))]
                if m != BASELINE:
                    row[f"{m}@{k}_vs_bm25"] = [round(v, 4) for v in
                                               boot.difference_interval(mean_of(hits), mean_of(base))]
                    row[f"{m}@{k}_ratio"] = round(float(hits.mean() / base.mean()), 3) if base.mean() else None
        out["sets"][name] = row
    return out


def against(folders: list[Path], before: list[Path], method: str = "pllm") -> dict[str, Any]:
    """A design change judged on the same questions: `method` in `folders` (after) against `before`, set by set in
    the same order, pooled; the paired interval of the difference in recall@k."""
    if len(folders) != len(before):
        raise UsageError("--before names one earlier run per run, in the same order")
    after_hits: dict[int, list[float]] = {k: [] for k in KS}
    before_hits: dict[int, list[float]] = {k: [] for k in KS}
    for new, old in zip(folders, before, strict=True):
        ranks_new, ranks_old = ({r["id"]: r[method] for r in _ranks(f)[1]} for f in (new, old))
        if ranks_new.keys() != ranks_old.keys():
            raise UsageError(f"{new} and {old} did not ask the same questions")
        for k in KS:
            after_hits[k] += [float(r is not None and r <= k) for r in ranks_new.values()]
            before_hits[k] += [float(ranks_old[i] is not None and ranks_old[i] <= k) for i in ranks_new]
    out: dict[str, Any] = {"method": method, "questions": len(after_hits[KS[0]])}
    boot = Bootstrap(out["questions"], seed=0)
    for k in KS:
        a, b = np.array(after_hits[k]), np.array(before_hits[k])
        out[f"after@{k}"], out[f"before@{k}"] = round(float(a.mean()), 4), round(float(b.mean()), 4)
        out[f"after_vs_before@{k}"] = [round(v, 4) for v in boot.difference_interval(mean_of(a), mean_of(b))]
    return out


def write_pool_report(result: dict[str, Any], folder: Path, *, command: str) -> None:
    report = Report("Memory: sets pooled", command=command, machine="")
    for k in KS:
        head = ["set", "questions", *[f"{m} recall@{k}" for m in result["methods"]],
                *[f"{m} vs bm25 (ratio; paired 95% CI)" for m in result["methods"] if m != BASELINE]]
        rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, row in result["sets"].items():
            cells = [f"**{name}**" if name == "pooled" else name, str(row["questions"])]
            cells += [with_interval(row[f"{m}@{k}"], row[f"{m}@{k}_interval"]) for m in result["methods"]]
            cells += [f"{row[f'{m}@{k}_ratio'] or '-'}x; {improvement_text(*row[f'{m}@{k}_vs_bm25'])}"
                      for m in result["methods"] if m != BASELINE]
            rows.append("| " + " | ".join(cells) + " |")
        report.add(f"recall@{k}:", "", *rows)
    if "against" in result:
        change = result["against"]
        report.add(f"Against the earlier runs (`--before`), {change['method']} on the same {change['questions']} "
                   "questions, pooled: " + "; ".join(
                       f"recall@{k} {change[f'before@{k}']:.3f} -> {change[f'after@{k}']:.3f}, "
                       f"{improvement_text(*change[f'after_vs_before@{k}'])}" for k in KS) + ".")
    report.write(folder, result)


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pllm.bench.memory_pool", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="report folders of `pllm eval --task memory`")
    parser.add_argument("--before", type=Path, nargs="+", default=[],
                        help="the same sets run before a change, in the same order: judged against them")
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        result = pool(args.runs)
        if args.before:
            result["against"] = against(args.runs, args.before)
    except (UsageError, OSError, ValueError) as exc:  # one line and exit 2, as the pllm commands answer bad input
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
    command = "python -m pllm.bench.memory_pool " + " ".join(map(str, args.runs)) + (
        " --before " + " ".join(map(str, args.before)) if args.before else "") + f" --report {args.report}"
    write_pool_report(result, args.report, command=command)
    sys.stdout.write(json.dumps(result["sets"]["pooled"]) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
