"""The server's arithmetic on LoRA updates: which aggregation is exact, which updates are refused, what a poisoned
client does to a mean and to a median, and the DP accounting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pllm.federated import dp
from pllm.federated.aggregate import Update, aggregate, change_norm, check_update, clip_change, sent_keys

KEY = "base_model.model.model.layers.9.self_attn.q_proj"
A, B = f"{KEY}.lora_A.weight", f"{KEY}.lora_B.weight"


def adapter(rng: np.random.Generator, r: int = 2, d_in: int = 6, d_out: int = 5, a: np.ndarray | None = None
            ) -> dict[str, np.ndarray]:
    return {A: a if a is not None else rng.normal(size=(r, d_in)).astype(np.float32),
            B: rng.normal(size=(d_out, r)).astype(np.float32)}


def product(w: dict[str, np.ndarray]) -> np.ndarray:
    return w[B].astype(np.float64) @ w[A].astype(np.float64)


def test_averaging_a_and_b_apart_is_not_the_mean_of_the_products_and_the_lora_aware_ways_are() -> None:
    rng = np.random.default_rng(0)
    start = adapter(rng)
    clients = [adapter(rng) for _ in range(3)]
    wanted = np.mean([product(c) for c in clients], axis=0)
    fedavg, info = aggregate(start, [Update(f"d{i}", c, 10) for i, c in enumerate(clients)], "fedavg")
    assert info["aggregation_error"] > 0.05 and not np.allclose(product(fedavg), wanted, atol=1e-3)
    # FFA-LoRA: every client kept the round's A, so the mean of the B's times A is the mean of the products.
    shared = [adapter(rng, a=start[A]) for _ in range(3)]
    ffa, info = aggregate(start, [Update(f"d{i}", {B: c[B]}, 10) for i, c in enumerate(shared)], "ffa")
    assert info["aggregation_error"] < 1e-6 and np.allclose(ffa[A], start[A])
    assert np.allclose(product(ffa), np.mean([product(c) for c in shared], axis=0), atol=1e-5)
    # SVD: the mean of the products, re-factored to rank r; exact when that mean has rank r.
    svd, info = aggregate(start, [Update(f"d{i}", c, 10) for i, c in enumerate(shared)], "svd")
    assert info["aggregation_error"] < 1e-5 and svd[A].shape == start[A].shape
    _, info = aggregate(start, [Update(f"d{i}", c, 10) for i, c in enumerate(clients)], "svd")
    assert 0 < info["aggregation_error"] < 1  # rank 6 truncated to 2: the rest is dropped and reported


def test_updates_with_wrong_tensors_shapes_nans_or_an_outsized_change_are_refused_with_the_reason() -> None:
    rng = np.random.default_rng(1)
    start = adapter(rng)
    good = {B: start[B] + 0.01}
    assert check_update(good, start, "ffa", max_norm=1.0) is None
    assert sent_keys(start, "ffa") == [B] and sent_keys(start, "fedavg") == [A, B]
    assert "wrong tensors" in str(check_update({A: start[A], B: start[B]}, start, "ffa", 1.0))
    assert "wrong shape" in str(check_update({B: np.zeros((5, 3), np.float32)}, start, "ffa", 1.0))
    assert "not finite" in str(check_update({B: np.full_like(start[B], np.nan)}, start, "ffa", 1.0))
    assert "over the limit" in str(check_update({B: start[B] + 10}, start, "ffa", 1.0))


def test_a_scaled_poisoned_update_drags_the_mean_and_barely_moves_the_median_or_the_clipped_mean() -> None:
    rng = np.random.default_rng(2)
    start = adapter(rng)
    honest = [{B: start[B] + 0.1 + rng.normal(scale=0.01, size=start[B].shape).astype(np.float32)} for _ in range(4)]
    attack = {B: start[B] - 40 * 0.1}
    updates = [Update(f"d{i}", u, 10) for i, u in enumerate([*honest, attack])]
    target = np.mean([u[B] for u in honest], axis=0)
    errors = {robust: float(np.abs(aggregate(start, updates, "ffa", robust)[0][B] - target).max())  # type: ignore[arg-type]
              for robust in ("mean", "median", "clipped")}
    assert errors["mean"] > 0.5 and errors["median"] < 0.05 and errors["clipped"] < 0.1, errors


def test_clipping_bounds_the_change_and_epsilon_grows_with_rounds_and_shrinks_with_noise() -> None:
    rng = np.random.default_rng(3)
    start = adapter(rng)
    big = {B: start[B] + 5}
    assert change_norm(clip_change(big, start, 1.0), start) == pytest.approx(1.0, rel=1e-5)
    assert clip_change({B: start[B] + 1e-3}, start, 1.0)[B] == pytest.approx(start[B] + 1e-3)
    assert dp.epsilon(1.0, 3) > dp.epsilon(1.0, 1) > dp.epsilon(2.0, 1) > 0
    assert dp.epsilon(0.0, 3) == math.inf and dp.epsilon(1.0, 0) == 0.0
    # Gaussian mechanism, z = 1, one round, delta 1e-5: the RDP bound is about 5.2 (tighter accountants say ~4.4).
    assert 4.0 < dp.epsilon(1.0, 1) < 6.0
    noisy = dp.add_noise(start, [B], 0.5, np.random.default_rng(0))
    assert np.allclose(noisy[A], start[A]) and 0.3 < float(np.std(noisy[B] - start[B])) < 0.8
