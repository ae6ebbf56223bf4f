"""The classification head on the frozen model's last hidden state: it reads its input, cross-validation chooses by
person, and the per-user adapter moves only as far as its pull lets it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pllm.lm.head import adapt_head, cross_validate, features, fit_head, folds_of, predict
from pllm.lm.runtime import Runtime

LABELS = ["1", "2", "3", "4", "5"]


def blobs(n: int, seed: int = 0, skew: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Five labels, each a cloud around its own direction; `skew` makes label 5 that much more frequent."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (5, 16))
    p = np.full(5, 1.0)
    p[4] += skew
    y = rng.choice(5, n, p=p / p.sum())
    return centres[y] + rng.normal(0, 0.8, (n, 16)), y


def test_the_head_reads_its_input_rather_than_the_prior() -> None:
    x, y = blobs(400, skew=4.0)  # label 5 is the majority: answering it always would be the prior
    head = fit_head(x, y, LABELS, l2=1e-3, balanced=False)
    xt, yt = blobs(200, seed=0, skew=4.0)
    preds = predict(head.log_probs(xt), LABELS, "argmax")
    assert len(set(preds)) == 5  # every label is answered
    assert np.mean([p == LABELS[t] for p, t in zip(preds, yt, strict=True)]) > 0.8


def test_the_rules_read_a_distribution_as_they_say() -> None:
    spread = np.log(np.array([[0.3, 0.0001, 0.0001, 0.3998, 0.3]]))  # mass at 1, 4 and 5
    assert predict(spread, LABELS, "argmax") == ["4"]
    assert predict(spread, LABELS, "median") == ["4"]  # the label where half the mass is reached
    assert predict(spread, LABELS, "mean") == ["3"]  # 0.3 * 1 + 0.4 * 4 + 0.3 * 5 = 3.4


def test_cross_validation_folds_by_person_and_scores_out_of_fold() -> None:
    x, y = blobs(300, seed=1)
    people = [f"p{n % 30}" for n in range(300)]
    folds = folds_of(people)
    assert all(len({folds[n] for n in range(300) if people[n] == p}) == 1 for p in set(people))
    choice = cross_validate(x, y, LABELS, people, kind="rating")
    assert choice.out_of_fold.shape == (300, 5) and set(choice.fold_heads) == set(np.unique(folds))
    assert choice.rule in ("median", "mean") and choice.score > -1.0  # MAE under 1 on separable clouds
    assert len(choice.grid) == 2 * 4 * 2  # weighting x L2 x rule


def test_the_per_user_adapter_moves_as_far_as_its_pull_allows() -> None:
    x, y = blobs(300, seed=2)
    head = fit_head(x, y, LABELS, l2=1e-2, balanced=False)
    mine = x[:12]
    flipped = np.full(12, 0)  # this person calls everything "1"
    loose = adapt_head(head, mine, flipped, pull=1e-4)
    tight = adapt_head(head, mine, flipped, pull=100.0)
    assert predict(loose.log_probs(mine), LABELS, "argmax").count("1") >= 10
    assert predict(tight.log_probs(mine), LABELS, "argmax") == predict(head.log_probs(mine), LABELS, "argmax")
    assert adapt_head(head, mine, flipped, pull=float("inf")) is head


def test_features_come_from_the_real_model_and_are_cached(runtime: Runtime, tmp_path: Path) -> None:
    prompts = [runtime.chat_prompt([{"role": "user", "content": text}])
               for text in ("The food was cold and the waiter rude.", "Best brunch in town, we loved it!")]
    cache = tmp_path / "features.npz"
    before = runtime.next_token_logits(prompts[0])
    first = features(runtime, prompts, cache=cache)
    assert first.shape == (2, runtime.llm.n_embd()) and np.all(np.isfinite(first))
    assert np.linalg.norm(first[0] - first[1]) > 1.0  # different inputs, different states
    again = features(runtime, prompts[::-1], cache=cache)
    assert np.array_equal(again, first[::-1])
    # The runtime still answers as before: the features leave no embeddings mode behind.
    assert np.allclose(runtime.next_token_logits(prompts[0]), before, atol=1e-4)


@pytest.mark.parametrize("rule", ["median", "mean"])
def test_a_rating_rule_never_answers_outside_the_scale(rule: str) -> None:
    rng = np.random.default_rng(3)
    rows = np.log(rng.dirichlet(np.ones(5), 50))
    assert set(predict(rows, LABELS, rule)) <= set(LABELS)
