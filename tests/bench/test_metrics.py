"""Metrics as LaMP defines them, against hand-computed values."""

import pytest

from pllm.bench.metrics import accuracy, macro_f1, mae, parse_rating, relative_gain, rmse, rouge


def test_accuracy_and_macro_f1() -> None:
    golds = ["a", "a", "b", "c"]
    preds = ["a", "b", "b", "b"]
    assert accuracy(preds, golds) == 0.5
    # F1: a = 2*1/(2*1+0+1) = 2/3; b = 2*1/(2+2+0) = 1/2; c = 0
    assert macro_f1(preds, golds) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_ratings_unparseable_counts_as_farthest() -> None:
    assert parse_rating("I'd say 4.") == 4 and parse_rating("great!") is None and parse_rating("7") is None
    assert mae(["4", "nonsense", "5"], ["5", "2", "5"]) == pytest.approx((1 + 3 + 0) / 3)
    assert rmse(["4", "nonsense", "5"], ["5", "2", "5"]) == pytest.approx(((1 + 9 + 0) / 3) ** 0.5)
    assert mae(["x"], ["3"]) == 2  # 1 and 5 are both 2 away


def test_rouge() -> None:
    scores = rouge(["the cat sat"], ["the cat sat on the mat"])
    assert scores["rouge-1"] == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert rouge(["completely different"], ["the cat"])["rouge-1"] == 0


def test_relative_gain_direction() -> None:
    assert relative_gain(0.6, 0.4, "accuracy") == pytest.approx(0.5)
    assert relative_gain(0.5, 1.0, "mae") == pytest.approx(0.5)  # half the error is a 50% gain
    assert relative_gain(0.3, 0.0, "accuracy") is None
