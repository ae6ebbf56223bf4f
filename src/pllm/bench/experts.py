"""`pllm eval --task experts`: every registered expert on every domain's exam, so a gain on its own exam can be told
apart from a gain any adapter would have (the short answer style all the distilled pairs share).

Per exam: the bare base's score, each expert's score (mean log-probability per token of the reference answers, as
`pllm expert train` examines), and, paired by question with a 95% bootstrap interval, the own expert's gain over the
base and over the best other expert on that exam. On llama.cpp, as the experts are served.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pllm.config import Settings
from pllm.errors import UsageError
from pllm.expert.distill import DistillConfig, distil_pairs
from pllm.expert.domains import load_domain, packaged_domains
from pllm.expert.registry import ExpertRegistry
from pllm.expert.train import ExpertTrainConfig, exam_scores, train_expert
from pllm.lm.embeddings import need_embedder
from pllm.lm.foundation import EmbeddedFoundation
from pllm.lm.hardware import cpu_info
from pllm.lm.runtime import Runtime
from pllm.stats import Bootstrap, mean_of


def run_expert_matrix(settings: Settings) -> dict[str, Any]:
    registry = ExpertRegistry(settings.paths.experts)
    names = [c.name for c in registry.cards() if c.name in packaged_domains()]
    if not names:
        raise UsageError(f"no registered experts of a packaged domain in {settings.paths.experts}")
    runtime = Runtime.from_settings(settings)
    scores: dict[str, dict[str, np.ndarray]] = {}
    try:
        for name in names:
            runtime.load_adapter(name, registry.adapter_path(name))
        for exam_name in names:
            exam = load_domain(exam_name).exam
            runtime.set_adapters({})
            row = {"base": exam_scores(runtime, exam)}
            for name in names:
                runtime.set_adapters({name: 1.0})
                row[name] = exam_scores(runtime, exam)
            scores[exam_name] = row
    finally:
        runtime.close()
    exams = {}
    for exam_name, row in scores.items():
        boot = Bootstrap(len(row["base"]), seed=settings.seed)
        others = [n for n in names if n != exam_name]
        best_other = max(others, key=lambda n: float(row[n].mean())) if others else None
        entry: dict[str, Any] = {
            "questions": len(row["base"]), "scores": {k: round(float(v.mean()), 4) for k, v in row.items()},
            "own_over_base": [round(v, 4) for v in boot.difference_interval(mean_of(row[exam_name]),
                                                                             mean_of(row["base"]))]}
        if best_other:
            entry["best_other"] = best_other
            entry["own_over_best_other"] = [round(v, 4) for v in boot.difference_interval(
                mean_of(row[exam_name]), mean_of(row[best_other]))]
        exams[exam_name] = entry
    return {"experts": names, "exams": exams, "cpu": cpu_info().as_dict(), "model": runtime.model.name}


def compare_teachers(settings: Settings, teachers: list[str], domains: list[str], *, per_topic: int = 3,
                     steps: int = ExpertTrainConfig.steps, tick: Any = lambda _: None) -> dict[str, Any]:
    """Each domain's expert distilled from each T-model (same filters, same steps, not registered), every expert
    examined on its domain's exam; the last teacher's expert against the first's, paired by question."""
    embedder = need_embedder("distillation")
    out: dict[str, Any] = {"teachers": teachers, "domains": {}, "cpu": cpu_info().as_dict(), "per_topic": per_topic,
                           "steps": steps}
    for domain_name in domains:
        domain, per_teacher = load_domain(domain_name), {}
        for teacher in teachers:
            tick(f"{domain_name}: {teacher} writes pairs")
            model = EmbeddedFoundation.from_settings(settings.model_copy(update={"foundation_model": teacher}))
            try:
                pairs, report = distil_pairs(model, domain, DistillConfig(per_topic=per_topic, seed=settings.seed),
                                             embedder)
            finally:
                model.runtime.close()
            tick(f"{domain_name}: the expert of {teacher} trains and sits the exam")
            result = train_expert(settings, domain, pairs, report, ExpertTrainConfig(steps=steps), register=False)
            per_teacher[teacher] = {"distillation": report.as_dict(), "exam": round(result.card.domain_score, 4),
                                    "base": round(result.card.base_score, 4),
                                    "gain_over_base": list(result.card.gain_interval),
                                    "per_question": [round(float(s), 5) for s in result.expert_per_question]}
        first, last = (np.array(per_teacher[t]["per_question"]) for t in (teachers[0], teachers[-1]))
        boot = Bootstrap(len(first), seed=settings.seed)
        out["domains"][domain_name] = {
            "teachers": per_teacher,
            "difference": {"of": f"{teachers[-1]} - {teachers[0]}",
                           "interval": [round(v, 4) for v in boot.difference_interval(mean_of(last), mean_of(first))]}}
    return out
