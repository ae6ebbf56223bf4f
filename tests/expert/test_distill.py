"""Distillation's filters on the real embedder, and the real embedded T-model writing pairs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pllm.expert.distill import DistillConfig, DistillReport, filter_pairs, parse_pairs, write_pairs
from pllm.expert.domains import QA, load_domain
from pllm.lm.embeddings import Embedder, need_embedder


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return need_embedder("the distillation tests")


def test_filters_drop_malformed_duplicate_near_duplicate_and_exam_leaks(embedder: Embedder) -> None:
    domain = load_domain("cooking")
    good = QA("How do I keep herbs fresh for longer?", "Stand soft herbs in a glass of water in the fridge.")
    pairs = [
        good,
        QA("Tell me about herbs", "Herbs are plants used for flavour in many dishes."),  # no question mark
        QA("How do I keep herbs fresh for longer?", "Wrap them in a damp towel."),  # same question
        QA("How can I keep my herbs fresh for longer?", "Keep them cold and damp."),  # the same, reworded
        QA("Why should steak rest after cooking?", "So the juices settle before it is cut."),  # an exam question
        QA("What is the difference between baking soda and baking powder?", "One needs an acid."),  # verbatim
        QA("What is a bain-marie used for?", "Cooking custards gently in a pan of hot water."),
    ]
    report = DistillReport()
    kept = filter_pairs(pairs, domain, embedder, DistillConfig(), report)
    assert kept == [good, pairs[-1]]
    assert report.proposed == 7 and report.kept == 2
    assert dict(report.dropped) == {"malformed": 1, "duplicate": 1, "near_duplicate": 1, "exam_leak": 2}


def test_parse_pairs_reads_every_complete_pair() -> None:
    text = " How long do I boil an egg?\nA: Six minutes for a soft yolk.\n\nQ: Why?\nA: Heat sets it.\nQ: And"
    assert parse_pairs(text) == [QA("How long do I boil an egg?", "Six minutes for a soft yolk."),
                                 QA("Why?", "Heat sets it.")]


def test_the_embedded_t_model_writes_domain_pairs(foundation: object) -> None:
    domain = replace(load_domain("cooking"), topics=("boiling and cooking pasta", "cooking rice on the stove"))
    report = DistillReport()
    pairs = write_pairs(foundation, domain, DistillConfig(per_topic=1, max_tokens=96), report)  # type: ignore[arg-type]
    assert report.requests == 2 and report.completion_tokens > 0 and report.t_model
    assert pairs, "the T-model wrote no question/answer pair in the guide's form"
    assert all(p.question and p.answer for p in pairs)
