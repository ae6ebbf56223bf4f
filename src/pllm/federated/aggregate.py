"""How the server turns the clients' LoRA updates into the expert's next adapter, and which updates it takes.

A LoRA update is W + (alpha/r)·B·A. Averaging A and B separately (`fedavg`) gives mean(B)·mean(A), which is not
the mean of the clients' products mean(B_i·A_i): the cross terms are an error nobody trained. The LoRA-aware ways:
- `ffa` (FFA-LoRA, Sun et al. 2024): A stays frozen at the starting adapter's on every client and only B trains and
  travels, so mean(B_i)·A = mean(B_i·A) exactly, at half the bytes; clipping and noise act on B alone.
- `svd`: the exact mean of the products, re-factored to rank r by a truncated SVD. What lies beyond rank r is
  dropped (FedEx-LoRA folds it into the base weights instead, but here one base serves every expert, so it cannot)
  and reported per round as `aggregation_error`.
Robust options against a poisoned client: `median` (coordinate-wise) and `clipped` (each update's change scaled
down to the round's median norm before the mean).

    new, info = aggregate(global_weights, updates, method="ffa", robust="mean")
    info["aggregation_error"]  # |mean of products - product of the new A, B| / |mean of products|
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Weights = dict[str, np.ndarray]  # PEFT naming: "...q_proj.lora_A.weight" -> (r, in), "...lora_B.weight" -> (out, r)
Method = Literal["fedavg", "ffa", "svd"]
Robust = Literal["mean", "median", "clipped"]
METHODS: tuple[Method, ...] = ("fedavg", "ffa", "svd")
ROBUST: tuple[Robust, ...] = ("mean", "median", "clipped")


@dataclass(frozen=True)
class Update:
    """One client's reply: the adapter weights it sends (only B under `ffa`) and how many examples it trained on."""

    device: str
    weights: Weights
    examples: int


def modules(weights: Weights) -> list[str]:
    """The LoRA modules of an adapter: the key prefix each A/B pair shares."""
    return sorted(k[: -len(".lora_A.weight")] for k in weights if k.endswith(".lora_A.weight"))


def sent_keys(weights: Weights, method: Method) -> list[str]:
    """What a client sends back: B alone under FFA-LoRA (A is frozen, the server has it), else A and B."""
    return sorted(k for k in weights if method != "ffa" or k.endswith(".lora_B.weight"))


def nbytes(weights: Weights) -> int:
    return int(sum(v.nbytes for v in weights.values()))


def change_norm(update: Weights, start: Weights) -> float:
    """The L2 norm of the update's change from the adapter the round started from, over the keys it sent."""
    return float(np.sqrt(sum(float(np.sum((update[k] - start[k]) ** 2)) for k in update)))


def check_update(update: Weights, start: Weights, method: Method, max_norm: float) -> str | None:
    """Why an update is refused (None: it is taken): the wrong keys or shapes, values that are not finite, or a
    change from the round's adapter larger than `max_norm`."""
    expected = set(sent_keys(start, method))
    if set(update) != expected:
        missing, extra = sorted(expected - set(update)), sorted(set(update) - expected)
        return f"wrong tensors: {len(missing)} missing, {len(extra)} unexpected" + (
            f" (e.g. {(missing or extra)[0]})" if missing or extra else "")
    for key, value in update.items():
        if value.shape != start[key].shape:
            return f"wrong shape for {key}: {tuple(value.shape)}, expected {tuple(start[key].shape)}"
        if not np.isfinite(value).all():
            return f"values that are not finite in {key}"
    norm = change_norm(update, start)
    if norm > max_norm:
        return f"change norm {norm:.3g} over the limit {max_norm:.3g}"
    return None


def clip_change(update: Weights, start: Weights, bound: float) -> Weights:
    """The update with its change from `start` scaled down to norm `bound` at most (differential privacy's clipping,
    and the `clipped` robust mean)."""
    norm = change_norm(update, start)
    if norm <= bound or norm == 0:
        return dict(update)
    scale = bound / norm
    return {k: start[k] + (v - start[k]) * scale for k, v in update.items()}


def _combine(values: Sequence[np.ndarray], shares: np.ndarray, robust: Robust) -> np.ndarray:
    stack = np.stack([np.asarray(v, dtype=np.float64) for v in values])
    if robust == "median":
        return np.median(stack, axis=0)
    return np.tensordot(shares, stack, axes=1)


def aggregate(start: Weights, updates: Sequence[Update], method: Method, robust: Robust = "mean",
              *, uniform: bool = False) -> tuple[Weights, dict[str, Any]]:
    """The next adapter from the round's accepted updates. `uniform` weighs every client alike (differential
    privacy needs it: one client's share of the mean is then bounded); otherwise by examples trained on."""
    if not updates:
        raise ValueError("no updates to aggregate")
    full = [{**start, **u.weights} for u in updates]  # under ffa a client's A is the round's A
    if robust == "clipped":
        bound = float(np.median([change_norm(u.weights, start) for u in updates]))
        full = [{**start, **clip_change(u.weights, start, bound)} for u in updates]
    counts = np.array([1.0 if uniform else max(1, u.examples) for u in updates])
    shares = counts / counts.sum()
    new: Weights = {}
    errors: list[float] = []
    for module in modules(start):
        a_key, b_key = f"{module}.lora_A.weight", f"{module}.lora_B.weight"
        products = [w[b_key].astype(np.float64) @ w[a_key].astype(np.float64) for w in full]
        target = _combine(products, shares, robust)
        if method == "svd":
            rank = start[a_key].shape[0]
            u, s, vt = np.linalg.svd(target, full_matrices=False)
            root = np.sqrt(s[:rank])
            b, a = u[:, :rank] * root, root[:, None] * vt[:rank]
        else:
            b = _combine([w[b_key] for w in full], shares, robust)
            a = start[a_key].astype(np.float64) if method == "ffa" else _combine([w[a_key] for w in full], shares,
                                                                                 robust)
        new[a_key], new[b_key] = a.astype(np.float32), b.astype(np.float32)
        scale = float(np.linalg.norm(target))
        if scale > 0:
            errors.append(float(np.linalg.norm(target - b @ a)) / scale)
    return new, {"aggregation_error": round(float(np.mean(errors)) if errors else 0.0, 6)}
