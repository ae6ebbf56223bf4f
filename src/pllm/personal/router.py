"""The router: answer on the device, ask a domain expert (E-tier), or ask the T-model, and say why.

    router = Router.for_vault(settings, vault, embedder, experts=cloud.experts())
    route = router.route("How long should bread dough prove?", confidence=lambda: draft_confidence(...))
    route.target, route.expert, route.reason        # "expert", "cooking", "domain cooking: cosine 0.71 >= 0.50"

In order, first match wins:
1. about the user -> local. The question names something the vault knows (a person, place or organisation from the
   user's facts and documents), holds personal data a pattern finds (an e-mail, a phone number, ...), asks about the
   user's own life in the first person ("did I", "my sister", "my favourite"), calls something theirs that their
   own items mention ("my knee" when a note speaks of the knee), is close (embedding cosine) to one of the user's
   own items or shares their rarer words (BM25), in any person ("Which knee hurt on the downhill?"), or is in the
   first person and close to one of their facts ("What nut should I avoid?" and "allergy: walnuts"). Such a
   question never leaves the device: when in doubt, the device answers.
2. a domain -> that expert: the question's similarity to an expert (the mean of its TOP_K best cosines to the
   expert's description, example questions and training questions: one look-alike pair is not a domain) reaches a
   threshold and beats its similarity to general questions no expert is for (`data/general_questions.txt`) by a
   margin: "How many minutes are in an hour?" is as close to a health expert's "how many minutes of exercise" as
   many health questions are, and closer still to the general ones.
3. a general question -> the T-model when it looks general and the local model is unsure of its own draft answer
   (mean token log-probability below a threshold), else local. Looks general: its similarity to the packaged
   general questions beats its similarity to the user's own items and facts by a margin. "What race is coming up?"
   or "Which town is home?" pass every personal rule above, yet are as close to Kari's notes and facts as to any
   general question: when in doubt, the device answers.
With no cloud configured, or experts unknown, the routes that need them fall back to local, saying so.
Thresholds are settings (`route_*`); every decision carries its reason and the figures it rests on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pllm.config import Settings, default
from pllm.lm.embeddings import encode_cached
from pllm.personal.privacy import Redactor, known_entities
from pllm.personal.retrieve import Retriever

if TYPE_CHECKING:
    from pllm.lm.embeddings import Embedder
    from pllm.personal.vault import Vault

Target = Literal["local", "expert", "cloud"]
TOP_K = 3  # an expert's similarity to a question: the mean of its best TOP_K cosines

FIRST_PERSON = re.compile(r"\b(i|me|my|mine|myself|we|us|our|ours|i'm|i've|i'd)\b", re.I)
# The user's own life, in the first person: what only the user's own data can answer.
ABOUT_ME = re.compile(
    r"\b(did|have|had|was|were|am) (i|we)\b|\bremind me\b|\bwhat('s| is) my\b|\bwho is my\b|\bwhen is my\b"
    r"|\b(my|our) (name|birthday|age|address|partner|wife|husband|girlfriend|boyfriend|sister|brother|mother|father|"
    r"mum|mom|dad|son|daughter|kids?|children|family|friends?|cat|dog|pets?|boss|colleagues?|appointments?|plans|"
    r"schedule|favou?rite|neighbou?rs?|home|house|flat|trip|holiday)\b",
    re.I)
MINE = re.compile(r"\b(?:my|our)\s+(\w+)(?:\s+(\w+))?", re.I)  # what the user calls theirs: "my last run"
GENERAL_QUESTIONS = Path(__file__).parents[1] / "data" / "general_questions.txt"


def general_questions() -> list[str]:
    """The packaged general questions an expert's similarity is weighed against."""
    lines = GENERAL_QUESTIONS.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@dataclass(frozen=True)
class ExpertInfo:
    """What the router knows of an expert: its name and the texts that say what it covers."""

    name: str
    texts: tuple[str, ...]

    @classmethod
    def from_catalog(cls, entry: dict[str, Any]) -> ExpertInfo:
        """From an entry of the cloud's `/v1/experts`: its description, example questions and a sample of the
        questions it trained on."""
        texts = [entry.get("description", ""), *entry.get("examples", []), *entry.get("questions", [])]
        return cls(str(entry["name"]), tuple(str(t) for t in texts if t))


@dataclass(frozen=True)
class Route:
    target: Target
    reason: str
    expert: str | None = None
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def destination(self) -> str:
        """Where the question goes: local, cloud, or expert:NAME (the privacy gate's destination names)."""
        return f"expert:{self.expert}" if self.target == "expert" else self.target

    def as_dict(self) -> dict[str, object]:
        return {"target": self.target, "expert": self.expert, "reason": self.reason,
                "scores": {k: round(v, 4) for k, v in self.scores.items()}}


@dataclass(frozen=True)
class RouterConfig:
    """The router's thresholds: the settings `route_*`, whose descriptions say what each decides."""

    domain_threshold: float = default("route_domain_threshold")
    domain_margin: float = default("route_domain_margin")
    personal_threshold: float = default("route_personal_threshold")
    personal_words: float = default("route_personal_words")
    personal_fact_threshold: float = default("route_personal_fact_threshold")
    cloud_margin: float = default("route_cloud_margin")
    confidence_threshold: float = default("route_confidence_threshold")

    @classmethod
    def from_settings(cls, settings: Settings) -> RouterConfig:
        return cls(settings.route_domain_threshold, settings.route_domain_margin, settings.route_personal_threshold,
                   settings.route_personal_words, settings.route_personal_fact_threshold,
                   settings.route_cloud_margin, settings.route_confidence_threshold)


class Router:
    def __init__(self, config: RouterConfig, embedder: Embedder, experts: Sequence[ExpertInfo], *,
                 redactor: Redactor | None = None, retriever: Retriever | None = None, facts: Sequence[str] = (),
                 cloud: bool = True, cache: Path | None = None) -> None:
        self.config = config
        self.embedder = embedder
        self.experts = list(experts)
        self.redactor = redactor
        self.retriever = retriever if retriever is not None and retriever.items else None
        self.facts = list(facts)
        self._fact_vectors = embedder.encode(self.facts) if self.facts else None
        self.cloud = cloud
        texts = [t for e in self.experts for t in e.texts]
        self._owner = np.array([i for i, e in enumerate(self.experts) for _ in e.texts], dtype=int)
        vectors = encode_cached(embedder, texts + general_questions(), cache)  # the catalog, not the user's texts
        self._expert_vectors = vectors[:len(texts)] if texts else None
        self._general_vectors = vectors[len(texts):]

    @classmethod
    def for_vault(cls, settings: Settings, vault: Vault | None, embedder: Embedder, experts: Sequence[ExpertInfo],
                  *, cloud: bool = True) -> Router:
        """A router that knows this user's entities and items (none without a vault)."""
        redactor = Redactor(known_entities(vault) if vault is not None else [], ner=False)
        retriever = Retriever.from_vault(vault, embedder=embedder) if vault is not None else None
        facts = [f"{fact.key}: {fact.value}" for fact in vault.facts() if not fact.subject] if vault else []
        return cls(RouterConfig.from_settings(settings), embedder, experts, redactor=redactor, retriever=retriever,
                   facts=facts, cloud=cloud, cache=settings.paths.cache / "router")

    def domain_scores(self, vector: np.ndarray) -> dict[str, float]:
        """Each expert's similarity to a question's (normalised) embedding, and under "general" its similarity to
        the general questions (both the mean of the TOP_K best cosines)."""
        scores: dict[str, float] = {}
        if self._expert_vectors is not None:
            sims = self._expert_vectors @ vector
            scores = {expert.name: top_mean(sims[self._owner == i]) for i, expert in enumerate(self.experts)}
        scores["general"] = top_mean(self._general_vectors @ vector)
        return scores

    def personal_similarity(self, vector: np.ndarray) -> float:
        """A question's best cosine to the user's own items and facts (0 with neither)."""
        best = 0.0
        if self.retriever is not None and self.retriever.vectors is not None:
            best = max(best, float((self.retriever.vectors @ vector).max()))
        if self._fact_vectors is not None:
            best = max(best, float((self._fact_vectors @ vector).max()))
        return best

    def route(self, question: str, confidence: Callable[[], float] | None = None) -> Route:
        vector = self.embedder.encode([question])[0]
        personal = self._about_the_user(question, vector)
        if personal is not None:
            return personal
        scores = self.domain_scores(vector)
        expert, closest = pick_domain(scores, self.config)
        if expert is not None:
            if not self.cloud:
                return Route("local", f"{closest}, but there is no cloud to ask", scores=scores)
            return Route("expert", closest, expert, scores)
        if not self.cloud:
            return Route("local", f"general question ({closest}); there is no cloud to ask", scores=scores)
        mine = scores["personal"] = self.personal_similarity(vector)
        if scores["general"] - mine < self.config.cloud_margin:
            return Route("local", f"not clearly general: cosine {scores['general']:.2f} to general questions, "
                                  f"{mine:.2f} to the user's own items and facts (margin < "
                                  f"{self.config.cloud_margin:+.2f})", scores=scores)
        if confidence is None:
            return Route("local", f"general question ({closest}); the local model's confidence was not asked",
                         scores=scores)
        sure = confidence()
        scores["confidence"] = sure
        if sure < self.config.confidence_threshold:
            return Route("cloud", f"general question ({closest}); the local draft's mean token log-probability "
                                  f"{sure:.2f} < {self.config.confidence_threshold:.2f}", scores=scores)
        return Route("local", f"general question ({closest}); the local model is sure enough ({sure:.2f} >= "
                              f"{self.config.confidence_threshold:.2f})", scores=scores)

    def _about_the_user(self, question: str, vector: np.ndarray) -> Route | None:
        if self.redactor is not None:
            spans = self.redactor.spans(question)
            if spans:
                kinds = sorted({s.kind for s in spans})
                return Route("local", f"about the user: it names {', '.join(kinds)} the vault knows or a pattern "
                                      "finds")
        first_person = bool(FIRST_PERSON.search(question))
        if first_person and ABOUT_ME.search(question):
            return Route("local", "about the user: asks about their own life in the first person")
        if self.retriever is not None:
            if first_person:
                for match in MINE.finditer(question):
                    for word in filter(None, match.groups()):
                        if (self.retriever.bm25_scores(word) > 0).any():
                            return Route("local", f"about the user: calls {match.group(0)!r} theirs, and their own "
                                                  f"items mention {word!r}")
            if self.retriever.vectors is not None:
                closest = float((self.retriever.vectors @ vector).max())
                if closest >= self.config.personal_threshold:
                    return Route("local", f"about the user: cosine {closest:.2f} to one of their items >= "
                                          f"{self.config.personal_threshold:.2f}", scores={"personal": closest})
            shared = float(self.retriever.bm25_scores(question).max())
            if shared >= self.config.personal_words:
                return Route("local", f"about the user: their own items share its words (BM25 {shared:.2f} >= "
                                      f"{self.config.personal_words:.2f})", scores={"personal_words": shared})
        if first_person and self._fact_vectors is not None:
            sims = self._fact_vectors @ vector
            best = int(np.argmax(sims))
            if sims[best] >= self.config.personal_fact_threshold:
                return Route("local", f"about the user: first person, cosine {sims[best]:.2f} to a fact of theirs "
                                      f"({self.facts[best].split(':')[0]!r}) >= "
                                      f"{self.config.personal_fact_threshold:.2f}", scores={"fact": float(sims[best])})
        return None


def pick_domain(scores: dict[str, float], config: RouterConfig) -> tuple[str | None, str]:
    """The expert a question belongs to by its `Router.domain_scores` (None: no expert's), and why."""
    experts = {name: score for name, score in scores.items() if name != "general"}
    if not experts:
        return None, "no experts known"
    best = max(experts, key=lambda name: experts[name])
    score, margin = experts[best], experts[best] - scores["general"]
    figures = f"similarity {score:.2f}, {margin:+.2f} over general questions"
    if score < config.domain_threshold:
        return None, f"closest domain {best}: {figures}; similarity < {config.domain_threshold:.2f}"
    if margin < config.domain_margin:
        return None, f"closest domain {best}: {figures}; margin < {config.domain_margin:+.2f}"
    return best, f"domain {best}: {figures} (>= {config.domain_threshold:.2f} and {config.domain_margin:+.2f})"


def top_mean(similarities: np.ndarray) -> float:
    """The mean of the TOP_K best cosines: one look-alike text is not a domain."""
    return float(np.sort(similarities)[-TOP_K:].mean())


def draft_confidence(logprob: float, tokens: int) -> float:
    """A draft answer's mean token log-probability (0 for an empty draft: nothing to be unsure of)."""
    return logprob / tokens if tokens else 0.0
