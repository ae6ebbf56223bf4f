"""`pllm eval --task routing`: the router on a mixed question set, against answering everything on the device.

The set (`data/routing.json` and the experts' exams), 310 questions with four experts:
- personal (40): about the made-up user of `pllm bench --latency` (Kari: her facts and 40 diary notes, in a real
  encrypted vault in a temporary folder); answerable only from her vault, so they must stay on the device;
- personal_heldout (40): more such questions, written after the first 40 had shaped the router's personal rules
  and before any router ran on them; personal_heldout2 (40): more again, written after personal_heldout had
  shown 7 questions leaving the device and before the rules changed for them ran on these; personal_heldout3 (40):
  written after personal_heldout2 had shown 2 questions going to the T-model, and before the margin that now
  guards the T-model route (`tune_cloud_margin`, tuned on the three sets before it) ran on them;
- domain (30 per registered expert): each expert's held-out exam, which it never trained on;
- general (30): general-knowledge questions.
The T-tier runs on loopback (`cloud.server.serve_loopback`) with the registered experts, and records every request
body it receives. Each question is asked through `Assistant.answer_routed` as `pllm ask --route` does; when it went
elsewhere, the device's own answer (personalised, as `pllm ask` gives it) is computed too, for the comparison.

Reported, each with a 95% bootstrap interval over questions: the correct-route rate (personal -> local; domain ->
that domain's expert; general -> local or the T-model, both right), ROUGE-L of the routed answers and of the
all-local answers against the references, paired, per category; the latency per route; and the personal questions
any of whose text reached the cloud (goal: 0), counted from what the cloud recorded, not from what the router said.
The thresholds are the settings' defaults, tuned on other questions (`tune_domain_routing`), never on this set.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pllm.bench.latency import build_vault
from pllm.bench.metrics import rouge_per_query
from pllm.cloud.server import serve_loopback
from pllm.config import Settings
from pllm.errors import UsageError
from pllm.expert.domains import load_domain, packaged_domains
from pllm.expert.registry import ExpertRegistry
from pllm.lm.embeddings import need_embedder
from pllm.lm.hardware import cpu_info
from pllm.lm.runtime import GenerationConfig, Runtime
from pllm.personal.assistant import Assistant
from pllm.personal.privacy import PrivacyGate
from pllm.personal.remote import CloudClient
from pllm.personal.retrieve import RetrievalConfig
from pllm.personal.router import ExpertInfo, Router, RouterConfig, pick_domain
from pllm.reports import Report
from pllm.stats import Bootstrap, mean_of

ROUTING_SET = Path(__file__).parents[1] / "data" / "routing.json"
PASSPHRASE = "routing-eval"  # the made-up user's throwaway vault
# Each personal set was written after the one before had shaped the rules, and before the rules were run on it.
PERSONAL = ("personal", "personal_heldout", "personal_heldout2", "personal_heldout3")


@dataclass(frozen=True)
class MixedQuestion:
    category: str  # personal, domain, general
    question: str
    reference: str
    domain: str = ""  # the expert that should answer a domain question

    def correct(self, destination: str) -> bool:
        if self.category in PERSONAL:
            return destination == "local"
        if self.category == "domain":
            return destination == f"expert:{self.domain}"
        return destination in ("local", "cloud")


def mixed_set(experts: list[str]) -> list[MixedQuestion]:
    raw = json.loads(ROUTING_SET.read_text(encoding="utf-8"))
    questions = [MixedQuestion(category, q["question"], q["answer"]) for category in PERSONAL for q in raw[category]]
    for name in experts:
        if name in packaged_domains():
            questions += [MixedQuestion("domain", qa.question, qa.answer, name) for qa in load_domain(name).exam]
    questions += [MixedQuestion("general", q["question"], q["answer"]) for q in raw["general"]]
    return questions


def run_routing(settings: Settings, *, max_tokens: int = 64, limit: int | None = None,
                tick: Callable[[], None] = lambda: None, on_total: Callable[[int], None] = lambda _: None
                ) -> dict[str, Any]:
    cards = ExpertRegistry(settings.paths.experts).cards()
    if not cards:
        raise UsageError(f"no registered experts in {settings.paths.experts}: train some with `pllm expert train NAME`")
    questions = mixed_set([c.name for c in cards])
    if limit:  # a quick run: the same share of each category
        questions = [q for n, q in enumerate(questions) if n % max(1, len(questions) // limit) == 0]
    on_total(len(questions))
    embedder = need_embedder("routing")
    config = GenerationConfig(max_tokens=max_tokens)
    record: list[tuple[str, bytes]] = []
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pllm-routing-") as folder:
        vault, _ = build_vault(Path(folder) / "vault.db", PASSPHRASE, questions=0)
        runtime = Runtime.from_settings(settings)
        try:
            with serve_loopback(settings, Path(folder) / "cloud", record=record) as (url, key):
                device = settings.model_copy(update={"cloud_url": url, "cloud_key": key})
                cloud = CloudClient(device, PrivacyGate(device, vault))
                experts = [ExpertInfo.from_catalog(e)
                           for e in cloud.experts()]
                router = Router.for_vault(device, vault, embedder, experts)
                assistant = Assistant(runtime, vault=vault, client="eval", embedder=embedder,
                                      retrieval=RetrievalConfig.from_settings(settings))
                for q in questions:
                    assistant.reset()
                    seen = len(record)
                    started = time.perf_counter()
                    completion, route = assistant.answer_routed(q.question, router, cloud, config)
                    seconds = time.perf_counter() - started
                    bodies = [body.decode("utf-8", "replace") for _, body in record[seen:]]
                    local_text = completion.text
                    if route.target != "local":
                        assistant.reset()
                        local_text = assistant.answer(q.question, config).text
                    rows.append({"category": q.category, "domain": q.domain, "question": q.question,
                                 "reference": q.reference, "route": route.destination, "reason": route.reason,
                                 "correct": q.correct(route.destination), "seconds": round(seconds, 3),
                                 "answer": completion.text, "local_answer": local_text,
                                 "left_the_device": bool(bodies)})
                    tick()
        finally:
            runtime.close()
            vault.close()
    return summarise(rows, settings, cards=[c.summary() for c in cards], cpu=cpu_info().as_dict(),
                     max_tokens=max_tokens)


def summarise(rows: list[dict[str, Any]], settings: Settings, **extra: Any) -> dict[str, Any]:
    routed = rouge_per_query([r["answer"] for r in rows], [r["reference"] for r in rows])["rouge-L"]
    local = rouge_per_query([r["local_answer"] for r in rows], [r["reference"] for r in rows])["rouge-L"]
    for row, a, b in zip(rows, routed, local, strict=True):
        row["rougeL"], row["rougeL_local"] = round(a, 4), round(b, 4)
    categories: dict[str, Any] = {}
    for category in (*PERSONAL, "domain", "general", "all"):
        picked = [r for r in rows if category in (r["category"], "all")]
        if not picked:
            continue
        boot = Bootstrap(len(picked), seed=settings.seed)
        correct = np.array([float(r["correct"]) for r in picked])
        ours = np.array([r["rougeL"] for r in picked])
        theirs = np.array([r["rougeL_local"] for r in picked])
        routes: dict[str, int] = {}
        for r in picked:
            routes[r["route"]] = routes.get(r["route"], 0) + 1
        categories[category] = {
            "questions": len(picked), "correct_route": round(float(correct.mean()), 4),
            "correct_route_interval": [round(v, 4) for v in boot.interval(mean_of(correct))],
            "routes": routes, "rougeL_routed": round(float(ours.mean()), 4),
            "rougeL_all_local": round(float(theirs.mean()), 4),
            "rougeL_gain_interval": [round(v, 4) for v in boot.difference_interval(mean_of(ours), mean_of(theirs))],
            "left_the_device": sum(r["left_the_device"] for r in picked)}
    latency: dict[str, Any] = {}
    for destination in sorted({r["route"] for r in rows}):
        seconds = [r["seconds"] for r in rows if r["route"] == destination]
        latency[destination] = {"questions": len(seconds), "median_seconds": round(statistics.median(seconds), 3)}
    thresholds = {"domain": settings.route_domain_threshold, "domain_margin": settings.route_domain_margin,
                  "personal": settings.route_personal_threshold, "personal_words": settings.route_personal_words,
                  "personal_fact": settings.route_personal_fact_threshold, "cloud_margin": settings.route_cloud_margin,
                  "confidence": settings.route_confidence_threshold}
    return {"categories": categories, "latency": latency, "thresholds": thresholds,
            "personal_left_the_device": sum(categories.get(c, {}).get("left_the_device", 0) for c in PERSONAL),
            "rows": rows, **extra}


def write_routing_report(result: dict[str, Any], folder: Path, *, command: str) -> Path:
    """report.md, results.json and a plot of correct routes and answer quality per category."""
    cats = [c for c in (*PERSONAL, "domain", "general") if c in result["categories"]]

    def draw(axes: Any) -> None:
        for axis, key, title in ((axes[0], "correct_route", "correct route"), (axes[1], None, "ROUGE-L")):
            if key:
                values = [result["categories"][c][key] for c in cats]
                low = [result["categories"][c][key] - result["categories"][c][f"{key}_interval"][0] for c in cats]
                high = [result["categories"][c][f"{key}_interval"][1] - result["categories"][c][key] for c in cats]
                axis.bar(cats, values, yerr=[low, high], color="#4a7", capsize=4)
                axis.set_ylim(0, 1.05)
            else:
                x = np.arange(len(cats))
                axis.bar(x - 0.2, [result["categories"][c]["rougeL_routed"] for c in cats], 0.4, label="routed")
                axis.bar(x + 0.2, [result["categories"][c]["rougeL_all_local"] for c in cats], 0.4, label="all local")
                axis.set_xticks(x, cats)
                axis.legend()
            axis.set_title(title)
            axis.tick_params(axis="x", labelrotation=20, labelsize=8)

    rows = ["| category | questions | correct route [95%] | routes | ROUGE-L routed | all local | gain [95%] | "
            "left the device |", "|---|---|---|---|---|---|---|---|"]
    for c, v in result["categories"].items():
        rows.append(f"| {c} | {v['questions']} | {v['correct_route']:.3f} {v['correct_route_interval']} | "
                    f"{v['routes']} | {v['rougeL_routed']:.3f} | {v['rougeL_all_local']:.3f} | "
                    f"{v['rougeL_gain_interval']} | {v['left_the_device']} |")
    report = Report(f"Routing: {result['categories']['all']['questions']} questions", command=command,
                    machine=f"CPU: {result['cpu'].get('model', '?')}. Thresholds: {result['thresholds']}.")
    report.add(*rows)
    report.add("Latency per route (median seconds): " + ", ".join(
        f"{k} {v['median_seconds']} s ({v['questions']})" for k, v in result["latency"].items()))
    return report.plot("routing.png", draw, size=(9, 3.4), panels=2).write(folder, result)


def _best(accuracy: dict[Any, float]) -> tuple[float, list[Any]]:
    """A grid search's best accuracy and every setting that reaches it (the tuners take the middle of those)."""
    top = max(accuracy.values())
    return top, [setting for setting, a in accuracy.items() if a == top]


def tune_domain_routing(settings: Settings) -> dict[str, Any]:
    """The domain threshold and margin that best separate, on a tuning set never evaluated, domain questions (each
    registered expert's own example questions, scored by the router against the rest of the catalog: the
    description and the training questions) from general ones (`tuning_general` in data/routing.json). Returns the
    accuracy over the grid and the middle of the best region (the median threshold of the best pairs, then the
    median margin of the best pairs at that threshold)."""
    embedder = need_embedder("router tuning")
    registry = ExpertRegistry(settings.paths.experts)
    cards = registry.cards()
    if not cards:
        raise UsageError(f"no registered experts in {settings.paths.experts}")
    router = Router(RouterConfig(), embedder, [ExpertInfo(c.name, (c.description, *registry.questions(c.name)))
                                               for c in cards])
    positives = [(c.name, router.domain_scores(v)) for c in cards for v in embedder.encode(c.examples)]
    negatives = [("", router.domain_scores(v)) for v in embedder.encode(
        json.loads(ROUTING_SET.read_text(encoding="utf-8"))["tuning_general"])]
    thresholds = [round(float(t), 2) for t in np.arange(0.2, 0.7, 0.01)]
    margins = [round(float(m), 2) for m in np.arange(-0.2, 0.21, 0.01)]
    accuracy: dict[tuple[float, float], float] = {}
    for t in thresholds:
        for m in margins:
            config = RouterConfig(domain_threshold=t, domain_margin=m)
            got = [pick_domain(scores, config)[0] for _, scores in positives + negatives]
            want = [name or None for name, _ in positives + negatives]
            accuracy[(t, m)] = sum(g == w for g, w in zip(got, want, strict=True)) / len(want)
    top, best = _best(accuracy)
    threshold = float(np.median(sorted({t for t, _ in best})))
    threshold = min({t for t, _ in best}, key=lambda t: abs(t - threshold))
    margin = float(np.median([m for t, m in best if t == threshold]))
    return {"threshold": round(threshold, 2), "margin": round(margin, 2), "accuracy": round(float(top), 4),
            "positives": len(positives), "negatives": len(negatives),
            "best_pairs": len(best), "grid": len(accuracy)}


def tune_cloud_margin(settings: Settings) -> dict[str, Any]:
    """The margin by which a question's similarity to the general questions must beat its similarity to the user's
    own items and facts before it may go to the T-model (`route_cloud_margin`). Tuned on Kari's vault with the
    personal sets before the last (which must stay) against `tuning_general` (which may go): the middle of the
    margins that separate the two best; the last personal set is never seen."""
    raw = json.loads(ROUTING_SET.read_text(encoding="utf-8"))
    personal = [q["question"] for category in PERSONAL[:-1] for q in raw[category]]
    general = list(raw["tuning_general"])
    embedder = need_embedder("router tuning")
    with tempfile.TemporaryDirectory(prefix="pllm-routing-") as folder:
        vault, _ = build_vault(Path(folder) / "vault.db", PASSPHRASE, questions=0)
        try:
            router = Router.for_vault(settings, vault, embedder, [])
            vectors = embedder.encode(personal + general)
            gaps = [router.domain_scores(v)["general"] - router.personal_similarity(v) for v in vectors]
        finally:
            vault.close()
    stay, may_go = np.array(gaps[:len(personal)]), np.array(gaps[len(personal):])
    grid = [round(float(m), 2) for m in np.arange(-0.3, 0.31, 0.01)]
    accuracy = {m: (int((stay < m).sum()) + int((may_go >= m).sum())) / len(gaps) for m in grid}
    top, best = _best(accuracy)
    return {"margin": round(float(np.median(best)), 2), "accuracy": round(top, 4), "personal": len(personal),
            "general": len(general), "personal_highest": round(float(stay.max()), 3),
            "general_lowest": round(float(may_go.min()), 3), "best_margins": [min(best), max(best)]}
