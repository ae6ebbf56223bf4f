"""E-tier commands: `pllm expert train|list|ask`. Thin: parse, call, print.

`train` is the one place the E-tier meets the T-model: it loads it as the cloud service does (embedded, or the
`--upstream` server) and hands it to `expert.distill`, which only needs its `complete_stream`.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from pllm.config import get_settings
from pllm.console import StepProgress, console, err_console, print_json, progress_bar, settings_of
from pllm.errors import ExpertError
from pllm.expert.distill import DistillConfig, DistillReport, distil_pairs, filter_pairs
from pllm.expert.domains import load_domain, read_qa_jsonl, read_topics
from pllm.expert.registry import ExpertRegistry
from pllm.expert.serving import ExpertPool
from pllm.lm.embeddings import need_embedder
from pllm.lm.runtime import GenerationConfig, Usage

expert_app = typer.Typer(help="Domain experts (E-tier): distil from the T-model, list, ask.", no_args_is_help=True)


@expert_app.command("train")
def train(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A packaged domain (cooking, finance, health, it) or a domain folder."),
    topics: Path = typer.Option(None, "--topics", help="Topics for the T-model to write about, one per line "
                                "(default: the domain's own)."),
    corpus: Path = typer.Option(None, "--corpus", help="Train on this domain corpus (jsonl of question/answer) "
                                "instead of asking the T-model."),
    upstream: str = typer.Option(None, "--upstream", help="Distil from this OpenAI-compatible server instead of "
                                 "the embedded T-model. Env: PLLM_UPSTREAM_URL."),
    per_topic: int = typer.Option(DistillConfig.per_topic, "--per-topic", min=1, max=32, help="Pairs asked for "
                                  "per topic (an instruct T-model: in one request; a base one: one request each)."),
    steps: int = typer.Option(60, "--steps", min=1, max=2000, help="Optimizer steps."),
    no_register: bool = typer.Option(False, "--no-register", help="Examine only; never register."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Distil an expert: the T-model writes the domain's pairs (or --corpus gives them), they are filtered, an
    adapter is trained, examined against the bare base on the domain's held-out exam, and registered only when it
    is better outside the 95% interval. Exit 1 when it is not."""
    from dataclasses import replace

    from pllm.expert.train import ExpertTrainConfig, train_expert  # lazy: brings the trainer's modules, ~14 ms

    settings = get_settings(**{**(ctx.find_root().obj or {}), "upstream_url": upstream})
    domain = load_domain(name)
    if topics is not None:
        domain = replace(domain, topics=read_topics(topics))
    embedder = need_embedder("distillation")
    config = DistillConfig(per_topic=per_topic, seed=settings.seed)
    if corpus is not None:
        report = DistillReport(t_model=f"corpus {corpus.name}")
        pairs = filter_pairs(read_qa_jsonl(corpus), domain, embedder, config, report)
    else:
        from pllm.lm.foundation import load_foundation  # heavy: imports fastapi

        t_model = load_foundation(settings)
        total = len(domain.topics)
        done = [0]
        with progress_bar("distil: the T-model writes pairs") as bar:
            task = bar.add_task("distil", total=total)
            err_console.print(f"distil: {t_model.name} writes about {len(domain.topics)} topics, "
                              f"{per_topic} pairs or requests each")

            def tick() -> None:
                bar.advance(task)
                done[0] += 1
                if not err_console.is_terminal and (done[0] % 5 == 0 or done[0] == total):
                    err_console.print(f"distil: {done[0]}/{total} topics")

            pairs, report = distil_pairs(t_model, domain, config, embedder, tick=tick)
    err_console.print(f"distil: {report.kept} of {report.proposed} pairs kept "
                      f"({report.summary()})")
    if not pairs:
        raise ExpertError("no pair survived the filters: nothing to train on")
    with StepProgress(f"expert {domain.name}") as progress:
        result = train_expert(settings, domain, pairs, report, ExpertTrainConfig(steps=steps),
                              on_step=progress.step, on_phase=progress.note, register=not no_register)
    if json_out:
        print_json({**result.card.summary(), "registered": result.registered, "reason": result.reason,
                    "details": result.card.details})
    else:
        console.print(f"{domain.name}: {result.reason}")
    if not result.registered and not no_register:
        raise typer.Exit(1)


@expert_app.command("list")
def list_experts(ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """The registered experts with their exam scores against the bare base."""
    cards = ExpertRegistry(settings_of(ctx).paths.experts).cards()
    if json_out:
        print_json([card.summary() for card in cards])
        return
    if not cards:
        console.print("no experts yet: `pllm expert train NAME` (packaged: cooking, finance, health, it)")
        return
    table = Table(title="experts (exam: mean log-probability per token of the reference answers)")
    for col in ("expert", "exam, expert", "exam, base", "gain 95% interval", "questions", "pairs", "T-model"):
        table.add_column(col)
    for c in cards:
        table.add_row(c.name, f"{c.domain_score:.3f}", f"{c.base_score:.3f}",
                      f"[{c.gain_interval[0]:+.3f}, {c.gain_interval[1]:+.3f}]", str(c.n_eval), str(c.train_pairs),
                      c.t_model)
    console.print(table)


@expert_app.command("ask")
def ask(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The expert."),
    question: str = typer.Argument(..., help="The question."),
    max_tokens: int = typer.Option(128, "--max-tokens", min=1, max=1024),
) -> None:
    """Ask one registered expert directly (on this machine, as the cloud service would answer)."""
    settings = settings_of(ctx)
    pool = ExpertPool(settings)
    try:
        config = GenerationConfig.from_settings(settings, max_tokens=max_tokens)
        for text in pool.chat_stream(name, [{"role": "user", "content": question}], config, Usage()):
            console.print(text, end="", markup=False)
        console.print()
    finally:
        pool.close()


def register(app: typer.Typer) -> None:
    app.add_typer(expert_app, name="expert")
