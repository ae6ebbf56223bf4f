"""CDCDA on the device: seeds, filters, and synthetic items kept apart in the vault (the real embedding model, the
real vault; the T-tier's side is tested end to end in test_cloud_cli.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pllm.lm.embeddings import need_embedder
from pllm.personal.adapt import collect
from pllm.personal.augment import AugmentConfig, RealItem, filter_items, pick_seeds
from pllm.personal.remote import RemoteItem
from pllm.personal.vault import content_hash, create_vault

REAL = ["I cycled to the lake this morning and swam before breakfast.",
        "Baked sourdough again; the crust finally came out dark and crackly.",
        "Our team shipped the billing migration after two weeks of testing.",
        "The cat knocked the basil off the windowsill for the third time."]


@pytest.fixture(scope="module")
def embedder():  # type: ignore[no-untyped-def]
    return need_embedder("augmentation")


def test_seeds_cover_the_clusters_and_prefer_the_recent() -> None:
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    vectors = np.stack([a, a, a, b, b])
    picked = pick_seeds(vectors, when=[1, 5, 3, 2, 4], k=2)
    assert picked == [1, 4]  # one per cluster, each its newest
    assert pick_seeds(vectors, when=[0] * 5, k=9) == [0, 1, 2, 3, 4]


def test_filters_drop_copies_placeholders_drift_length_and_wrong_labels(embedder) -> None:  # type: ignore[no-untyped-def]
    real = [RealItem(t, "4") for t in REAL]  # the user's own label, which their scorer has not learnt yet
    vectors = embedder.encode(REAL)
    proposed = [
        RemoteItem(0, "I cycled to the lake this morning and swam before breakfast.", "4"),  # a copy
        RemoteItem(0, "I cycled to the lake this morning and swam before my breakfast.", "4"),  # near copy
        RemoteItem(1, "ok", "4"),  # too short
        RemoteItem(2, "Quarterly derivative yields on sovereign bonds inverted again in Tokyo markets.", "4"),
        RemoteItem(1, "Made focaccia with rosemary; the dough rose slowly in the cold kitchen.", "4"),
        RemoteItem(1, "The dog chewed the garden hose and dragged it across the lawn again.", "4"),
        RemoteItem(1, "Baked rye bread for [COMPANY_1]; the crust came out dark again.", "4"),  # a made-up placeholder
    ]
    config = AugmentConfig(similarity_band=(0.3, 0.95))

    def scorer(text: str) -> str:  # labels bread "3", all else "1"; the user gave the seeds "4"
        return "3" if "dough" in text or "crust" in text else "1"

    kept, report = filter_items(proposed, real, vectors, embedder, replace(config, label_check="as_seed"),
                                scorer=scorer)
    # The focaccia note says what its sourdough seed says, as the scorer judges both: kept, with the user's "4",
    # which the scorer would not give; the dog story, written from the same seed, is judged otherwise: dropped.
    assert [(k.text, k.label) for k in kept] == [(proposed[4].text, "4")]
    strict, _ = filter_items(proposed, real, vectors, embedder, config, scorer=scorer)  # seed_label, the default
    assert strict == []  # the scorer gives neither the user's "4": only what it already predicts would pass
    twins = [RemoteItem(1, "Made focaccia with rosemary; the dough rose slowly in the cold kitchen.", "4"),
             RemoteItem(1, "Baked rye rolls; the dough needed a warm corner and the crust cracked.", "4")]
    quota, by_quota = filter_items(twins, real, vectors, embedder, replace(config, label_check="as_seed",
                                                                           keep_per_seed=1), scorer=scorer)
    assert len(quota) == 1 and by_quota.dropped["seed_quota"] == 1  # one seed, one new item
    assert report.proposed == 7 and report.kept == 1 and report.dropped["placeholder"] == 1
    assert report.dropped["duplicate"] == 1 and report.dropped["near_duplicate"] == 1
    assert report.dropped["length"] == 1
    assert report.dropped["too_far"] + report.dropped["label"] == 2 and report.dropped["label"] >= 1


def test_synthetic_items_stay_apart_train_at_a_ratio_and_go_with_their_seed(tmp_path: Path) -> None:
    vault = create_vault(tmp_path / "v.db", "pw")
    vault.add_documents([("n", "txt", text, float(n)) for n, text in enumerate(REAL)])
    seed = content_hash(REAL[1])
    stored = vault.add_synthetic([("texts", "Tried rye flour in the starter; it smelled of apples.", None, seed, "m"),
                                  ("texts", "Shaped two loaves and scored them with a razor.", None, seed, "m"),
                                  ("texts", "Cleaned the bike chain after the muddy ride.", None,
                                   content_hash(REAL[0]), "m")])
    assert stored == 3
    assert vault.add_synthetic([("texts", "Shaped two loaves and scored them with a razor.", None, seed, "m")]) == 0
    assert [d.content for d in vault.documents()] == REAL  # never among the user's own words
    exported = vault.export()
    assert len(exported["synthetic"]) == 3 and len(exported["documents"]) == 4

    none = collect(vault)
    assert none.counts["synthetic"] == 0
    half = collect(vault, 0.5)  # at most 0.5 per own text: 2 of 3
    assert half.counts["synthetic"] == 2
    synthetic_hashes = {s.content_hash for s in vault.synthetic_items()}
    assert len(synthetic_hashes & set(half.sources)) == 2
    assert not any(e.target in {s.content for s in vault.synthetic_items()}
                   for e in half.held_personal)  # the gate judges on real data only

    report = vault.forget(query="sourdough")  # the seed goes, and what was written from it
    assert report.documents == 1 and report.synthetic == 2
    assert [s.content for s in vault.synthetic_items()] == ["Cleaned the bike chain after the muddy ride."]
    assert vault.forget(query="bike chain").synthetic == 1  # and one can be forgotten by its own text
    assert vault.synthetic_items() == []
    vault.close()
