"""Differential privacy for the federated rounds, at the level of a client (DP-FedAvg, McMahan et al. 2018).

Each client clips its change to the adapter to L2 norm `clip` before sending it; the server takes the plain mean
over the round's n clients (every client weighs alike) and adds Gaussian noise of standard deviation
noise_multiplier * clip / n to every coordinate it averaged. Adding or removing one client moves the sum of the
clipped changes by at most `clip`, so each round is a Gaussian mechanism with noise multiplier z; composed over the
rounds with Rényi DP (full participation, no subsampling amplification claimed):
    eps_RDP(alpha) = rounds * alpha / (2 z^2),   eps(delta) = min_alpha eps_RDP(alpha) + log(1/delta) / (alpha - 1).
The noise goes on B only under FFA-LoRA (A is frozen and public), which is why DP is offered with `ffa` alone.
"""

from __future__ import annotations

import math

import numpy as np

from pllm.federated.aggregate import Weights

DELTA = 1e-5
_ORDERS = [1 + x / 10 for x in range(1, 100)] + list(range(12, 257))


def add_noise(weights: Weights, keys: list[str], std: float, rng: np.random.Generator) -> Weights:
    """`weights` with N(0, std^2) added to each of `keys`."""
    noisy = dict(weights)
    for key in keys:
        noisy[key] = (weights[key] + rng.normal(0.0, std, size=weights[key].shape)).astype(np.float32)
    return noisy


def epsilon(noise_multiplier: float, rounds: int, delta: float = DELTA) -> float:
    """The (epsilon, delta) spent after `rounds` rounds of the Gaussian mechanism with this noise multiplier."""
    if noise_multiplier <= 0:
        return math.inf
    if rounds <= 0:
        return 0.0
    rdp = rounds / (2 * noise_multiplier**2)
    return min(rdp * alpha + math.log(1 / delta) / (alpha - 1) for alpha in _ORDERS)
