"""CDCDA's device half: choose seed items, have the T-tier write new ones through the privacy gate, keep what passes.

    outcome = augment_items(cloud, "product reviews with the 1-5 score the person gave", real, embedder,
                            AugmentConfig(per_seed=4), scorer=lambda text: my_adapter_label(text))
    outcome.kept        # RemoteItems, restored on the device, that passed every filter
    outcome.report      # how many each filter dropped

Seeds are diverse and recent: the user's items are clustered by embedding (k-means, k = the seed budget) and each
cluster gives its most recent item. The T-model only ever sees them redacted (`personal.remote.CloudClient`).
On the device, a new item is dropped when it is empty, still holds a placeholder after restoring (the T-model made up
`[COMPANY_1]`, which has no value to put back), too short or too long against the user's own items, an
exact or near duplicate (of a real item or of one kept already), when its embedding sits outside a similarity band
to the nearest real item (above it is a paraphrase that teaches nothing new, below it has drifted off the user's
world), or, for label tasks, when the user's own scorer labels it otherwise than it labels its seed
(`label_check="as_seed"`: the new text says what its seed says, judged the same way) or otherwise than the seed's
own label (`"seed_label"`: keeps only what the scorer already predicts, which can sharpen it but not correct it).
A kept item carries its seed's label, the user's own, either way. Which helps is measured in docs/BENCHMARKS.md.
Last, a seed whose new items already fill its quota (`keep_per_seed`) gives no more: a few prolific seeds would
otherwise tilt the user's label mix.
`pllm augment` (the user's texts, stored in the vault marked synthetic) and the `cdcda` method of `pllm eval`
both run this one function.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pllm.config import default
from pllm.errors import UsageError
from pllm.filters import FilterCounts
from pllm.lm.embeddings import need_embedder, spherical_kmeans
from pllm.personal.privacy import PrivacyGate, has_placeholder
from pllm.personal.remote import CloudClient

if TYPE_CHECKING:
    from pllm.config import Settings
    from pllm.lm.embeddings import Embedder
    from pllm.personal.remote import RemoteItem
    from pllm.personal.vault import Vault

WORD = re.compile(r"\w+")
# What `pllm augment --task` can ask for from the vault, and how the T-tier is told what the items are.
DEVICE_TASKS = {"texts": "short notes and messages this person wrote"}
MIN_SEEDS = 2
FILTERS = ("empty", "placeholder", "length", "duplicate", "near_duplicate", "label", "too_similar", "too_far",
           "seed_quota")


@dataclass(frozen=True)
class AugmentConfig:
    """How CDCDA's device half asks and filters; per_seed, seeds, label_check, keep_per_seed and the two bands
    are settings (`augment_*`)."""

    per_seed: int = default("augment_per_seed")  # new items asked for per seed
    seeds: int = default("augment_seeds")  # at most this many seeds per user
    near_duplicate: float = 0.7  # word-set Jaccard at or above this to any kept item is a near duplicate
    similarity_band: tuple[float, float] = default("augment_similarity_band")  # cosine to the nearest real item
    length_band: tuple[float, float] = default("augment_length_band")  # times the shortest / longest real item
    max_tokens: int = 96
    temperature: float = 0.9
    seed: int = 0
    label_check: str = default("augment_label_check")  # seed_label or as_seed: see filter_items
    keep_per_seed: int = default("augment_keep_per_seed")  # at most this many kept items per seed (0: no limit)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> AugmentConfig:
        """The settings' values (`PLLM_AUGMENT_*`), then `overrides` (a flag, a run's seed)."""
        values = {"per_seed": settings.augment_per_seed, "seeds": settings.augment_seeds,
                  "label_check": settings.augment_label_check, "keep_per_seed": settings.augment_keep_per_seed,
                  "similarity_band": settings.augment_similarity_band, "length_band": settings.augment_length_band}
        return cls(**{**values, **overrides})


@dataclass(frozen=True)
class RealItem:
    text: str
    label: str | None = None
    when: float = 0.0  # for recency: larger is newer


@dataclass
class AugmentOutcome:
    seeds: list[int]  # indices into the real items
    kept: list[RemoteItem]
    report: FilterCounts
    usage: dict[str, int]  # requests, prompt_tokens, completion_tokens (as the service counted them)
    seconds: float  # the round trips to the T-tier
    filter_seconds: float = 0.0
    model: str = ""  # the T-model that wrote them

    def source(self, item: RemoteItem) -> int:
        """The index, among the real items, of the seed a new item was written from."""
        return self.seeds[item.seed]


def pick_seeds(vectors: np.ndarray, when: Sequence[float], k: int) -> list[int]:
    """k diverse, recent items: k-means on the (normalised) vectors, started from the newest item and then the
    farthest ones; from each cluster its most recent member. Deterministic."""
    n = len(vectors)
    if n <= k:
        return list(range(n))
    assign = spherical_kmeans(vectors, k, first=max(range(n), key=lambda i: (when[i], i)))
    picked = [max((i for i in range(n) if assign[i] == c), key=lambda i: (when[i], i))
              for c in range(k) if (assign == c).any()]
    return sorted(picked)


def _words(text: str) -> set[str]:
    return set(WORD.findall(text.lower()))


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def filter_items(proposed: Sequence[RemoteItem], real: Sequence[RealItem], real_vectors: np.ndarray,
                 embedder: Embedder, config: AugmentConfig, scorer: Callable[[str], str] | None = None,
                 seeds: Sequence[int] | None = None) -> tuple[list[RemoteItem], FilterCounts]:
    """The device's filters, in order (cheap first); see the module docstring. `seeds`: the real items the T-tier
    was given, in order (a new item's `seed` indexes it; default: all of `real`)."""
    seeds = list(range(len(real))) if seeds is None else list(seeds)
    report = FilterCounts(FILTERS, proposed=len(proposed))
    lengths = [len(item.text.split()) for item in real] or [1]
    shortest = max(1.0, config.length_band[0] * min(lengths))
    longest = config.length_band[1] * max(lengths)
    seen_exact = {" ".join(item.text.lower().split()) for item in real}
    kept_words = [_words(item.text) for item in real]
    survivors: list[RemoteItem] = []
    for item in proposed:
        text = " ".join(item.text.split())
        if not WORD.search(text):
            report.drop("empty")
        elif has_placeholder(text):  # the T-model imitated the gate's placeholders; no value to put back
            report.drop("placeholder")
        elif not shortest <= len(text.split()) <= longest:
            report.drop("length")
        elif text.lower() in seen_exact:
            report.drop("duplicate")
        elif any(_jaccard(words := _words(text), other) >= config.near_duplicate for other in kept_words):
            report.drop("near_duplicate")
        else:
            seen_exact.add(text.lower())
            kept_words.append(words)
            survivors.append(item)
    if survivors:  # embeddings in one batch, for what is left
        nearest = (embedder.encode([item.text for item in survivors]) @ real_vectors.T).max(axis=1)
        low, high = config.similarity_band
        banded = []
        for item, similarity in zip(survivors, nearest, strict=True):
            if similarity > high:
                report.drop("too_similar")
            elif similarity < low:
                report.drop("too_far")
            else:
                banded.append(item)
        survivors = banded
    kept: list[RemoteItem] = []
    per_seed: Counter[int] = Counter()
    seed_verdicts: dict[int, str] = {}  # as_seed: what the scorer says of each seed, asked once
    for item in survivors:  # the user's scorer last: the most expensive filter, not asked once a seed's quota is full
        if config.keep_per_seed and per_seed[item.seed] >= config.keep_per_seed:
            report.drop("seed_quota")
            continue
        if scorer is not None and item.label is not None:
            wanted = item.label
            if config.label_check == "as_seed":
                if item.seed not in seed_verdicts:
                    seed_verdicts[item.seed] = scorer(real[seeds[item.seed]].text)
                wanted = seed_verdicts[item.seed]
            if scorer(item.text) != wanted:
                report.drop("label")
                continue
        per_seed[item.seed] += 1
        kept.append(item)
    report.kept = len(kept)
    return kept, report


def augment_items(cloud: CloudClient, task: str, real: Sequence[RealItem], embedder: Embedder,
                  config: AugmentConfig = AugmentConfig(), *,
                  scorer: Callable[[str], str] | None = None) -> AugmentOutcome:
    """Seeds from `real`, new items from the T-tier (through the gate), the device's filters; see the module."""
    if not real:
        return AugmentOutcome([], [], FilterCounts(FILTERS), {}, 0.0)
    vectors = embedder.encode([item.text for item in real])
    seeds = pick_seeds(vectors, [item.when for item in real], config.seeds)
    started = time.perf_counter()
    proposed, usage, model = cloud.augment(task, [(real[i].text, real[i].label) for i in seeds], n=config.per_seed,
                                    max_tokens=config.max_tokens, temperature=config.temperature, seed=config.seed)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    kept, report = filter_items(proposed, real, vectors, embedder, config, scorer, seeds)
    return AugmentOutcome(seeds, kept, report, usage, seconds, time.perf_counter() - started, model)


@dataclass
class VaultAugmentation:
    outcome: AugmentOutcome
    stored: int  # new rows in the vault (a text already there is not stored twice)


def augment_vault(settings: Settings, vault: Vault, task: str = "texts",
                  config: AugmentConfig | None = None) -> VaultAugmentation:
    """`pllm augment`: the user's own texts seed the T-tier; what passes the filters is stored, marked synthetic."""
    if task not in DEVICE_TASKS:
        raise UsageError(f"unknown augmentation task {task!r}; choose from {', '.join(DEVICE_TASKS)}")
    config = config or AugmentConfig.from_settings(settings)
    docs = [d for d in vault.documents() if not d.speaker]  # the user's own words only
    if len(docs) < MIN_SEEDS:
        raise UsageError(f"augmentation needs at least {MIN_SEEDS} texts of your own in the vault "
                         f"(it has {len(docs)}): `pllm ingest` some first")
    real = [RealItem(d.content, None, d.created_at) for d in docs]
    cloud = CloudClient(settings, PrivacyGate(settings, vault))
    outcome = augment_items(cloud, DEVICE_TASKS[task], real, need_embedder("augmentation"), config)
    stored = vault.add_synthetic([(task, item.text, item.label, docs[outcome.source(item)].content_hash,
                                   outcome.model or "unknown") for item in outcome.kept])
    return VaultAugmentation(outcome, stored)
