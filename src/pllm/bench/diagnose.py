"""Why the LoRA task adapter collapses on a real label task, with the evidence: its answers per label and its
confusion against the golds, a learning curve over training items, the variants that ought to make it read the
input (the loss on the label alone, class-balanced batches, longer training at a lower rate), and the head on the
frozen model's last hidden state (lm/head.py) on the same items, for comparison.

Every variant trains on the training users' items only (the folder's train split, `training_items`: the same
seeded order for all, so a larger set contains the smaller) and is scored on the dev questions as `pllm eval`
scores `task-lora` (labels by calibrated likelihood, the adapter applied).

    python -m pllm.bench.diagnose --task lamp3 --data data/dev/yelp400-a --report docs/eval/diagnose-yelp400-a
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pllm.bench.data import questions_for
from pllm.bench.methods.base import SYSTEM, Env, choose_label
from pllm.bench.methods.head import Labelled, _features, training_items
from pllm.bench.metrics import PRIMARY
from pllm.bench.tasks.base import get_task
from pllm.config import get_settings
from pllm.lm.adapter import Purpose, train_adapter, train_config
from pllm.lm.head import cross_validate, fit_head, predict
from pllm.lm.train import Example
from pllm.reports import Report

CURVE = (50, 100, 200, 400)  # training items of the learning curve
HEAD_CURVE = (50, 100, 200, 400, 800, 1600)
EPOCHS = 2.0  # passes over the items for the curve's adapters (the published recipe saw 240 items 1.2 times)


@dataclass
class Variant:
    name: str
    items: int
    steps: int = 0  # 0: EPOCHS passes
    lr: float = 2e-3
    balanced: bool = False
    target_end: bool = True
    head: bool = False


@dataclass
class Outcome:
    variant: Variant
    primary: float
    answers: dict[str, int]
    confusion: dict[str, dict[str, int]]  # gold -> answer -> count
    seconds: float
    losses: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def variants(available: int) -> list[Variant]:
    out = [Variant("published recipe (240 items, 36 steps, lr 2e-3)", 240, steps=36)]
    out += [Variant(f"curve: {n} items, {EPOCHS:g} epochs", n) for n in CURVE if n <= available]
    n = min(400, available)
    out += [Variant(f"{n} items, loss on the label alone", n, target_end=False),
            Variant(f"{n} items, class-balanced", n, balanced=True),
            Variant(f"{n} items, 4 epochs at lr 1e-3", n, steps=round(4 * n / 8), lr=1e-3)]
    out += [Variant(f"head: {n} items", n, head=True) for n in HEAD_CURVE if n <= available]
    return out


def balanced(items: list[Labelled], seed: int) -> list[Labelled]:
    """As many items, each label equally often (minority labels repeated, majority ones cut)."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[Labelled]] = {}
    for item in items:
        groups.setdefault(item.label, []).append(item)
    each = max(1, len(items) // len(groups))
    out = [g[int(i)] for g in groups.values() for i in rng.choice(len(g), each, replace=len(g) < each)]
    rng.shuffle(out)  # type: ignore[arg-type]
    return out


def run_variant(env: Env, v: Variant, items: list[Labelled], dev: list[Any]) -> Outcome:
    task, started = env.task, time.perf_counter()
    chosen = items[: v.items]
    golds = [str(q.gold) for q in dev]
    losses: list[float] = []
    extra: dict[str, Any] = {}
    if v.head:
        labels = task.labels(dev[0]) if task.kind == "rating" else sorted({i.label for i in chosen})
        x = _features(env, [i.text for i in chosen], public=True)
        y = np.array([labels.index(i.label) if i.label in labels else 0 for i in chosen])
        choice = cross_validate(x, y, labels, [i.person for i in chosen], kind=task.kind, seed=env.seed)
        head = fit_head(x, y, labels, choice.l2, choice.balanced)
        preds = predict(head.log_probs(_features(env, [q.input for q in dev], public=False)), labels, choice.rule)
        extra = {"l2": choice.l2, "balanced": choice.balanced, "rule": choice.rule}
    else:
        if v.balanced:
            chosen = balanced(chosen, env.seed)
        examples = [Example.of([{"role": "system", "content": SYSTEM}, {"role": "user", "content": i.text}],
                               i.label) for i in chosen]
        steps = v.steps or max(8, round(EPOCHS * len(examples) / 8))
        config = train_config(env.settings, Purpose.TASK, steps=steps, lr=v.lr, seed=env.seed,
                              target_end=v.target_end)
        trained = train_adapter(env.settings, examples, config)
        losses = trained.result.losses
        runtime = env.runtime
        runtime.load_adapter("task", trained.gguf)
        runtime.set_adapters({"task": 1.0})
        preds = [choose_label(env, q, []) for q in dev]
        runtime.set_adapters({})
        runtime.unload_adapter("task")
        extra = {"steps": steps, "train_seconds": round(trained.result.seconds, 1),
                 "train_labels": dict(Counter(i.label for i in chosen).most_common())}
    metric = task.evaluate(preds, golds)[PRIMARY[task.kind]]
    confusion: dict[str, dict[str, int]] = {}
    for p, g in zip(preds, golds, strict=True):
        confusion.setdefault(g, {}).setdefault(p, 0)
        confusion[g][p] += 1
    return Outcome(v, metric, dict(Counter(preds).most_common()), confusion, time.perf_counter() - started, losses,
                   extra)


def write(outcomes: list[Outcome], golds: dict[str, int], folder: Path, primary: str, command: str) -> None:
    labels = sorted(golds)
    rows = ["| variant | " + primary + " | answers (" + " / ".join(labels) + ") | s |", "|---|---|---|---|",
            f"| gold | | {' / '.join(str(golds.get(label, 0)) for label in labels)} | |"]
    for o in outcomes:
        counts = " / ".join(str(o.answers.get(label, 0)) for label in labels)
        rows.append(f"| {o.variant.name} | {o.primary:.3f} | {counts} | {o.seconds:.0f} |")

    def curve(ax: Any) -> None:
        for kind, marker in (("curve:", "o-"), ("head:", "s-")):
            points = [(o.variant.items, o.primary) for o in outcomes if o.variant.name.startswith(kind)]
            if points:
                ax.plot(*zip(*points, strict=True), marker, label="LoRA task adapter" if kind == "curve:" else "head")
        ax.set_xscale("log")
        ax.set_xlabel("training items (other people's)")
        ax.set_ylabel(primary)
        ax.set_title("learning curve on the dev questions", fontsize=10)
        ax.legend(fontsize=8)

    results = {"golds": golds, "outcomes": [{**asdict(o), "variant": asdict(o.variant)} for o in outcomes]}
    Report(f"Task adapter diagnosis: {primary}", command=command).add(*rows).plot("curve.png", curve).write(folder,
                                                                                                          results)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m pllm.bench.diagnose", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="lamp3")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--only", default="", help="comma-separated start of variant names to run (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings, task = get_settings(), get_task(args.task)
    data = questions_for(task, settings, data=args.data, synthetic=None, users=None, seed=args.seed)
    env = Env(task=task, settings=settings, seed=args.seed, train_questions=data.train)
    items = training_items(task, env)
    outcomes = []
    try:
        for v in variants(len(items)):
            if args.only and not any(v.name.startswith(p) for p in args.only.split(",")):
                continue
            outcomes.append(run_variant(env, v, items, data.evaluated))
            sys.stderr.write(f"diagnose: {v.name}: {outcomes[-1].primary:.3f} {outcomes[-1].answers}\n")
    finally:
        env.close()
    golds = dict(Counter(str(q.gold) for q in data.evaluated).most_common())
    write(outcomes, golds, args.report, PRIMARY[task.kind], "python -m pllm.bench.diagnose " + " ".join(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
