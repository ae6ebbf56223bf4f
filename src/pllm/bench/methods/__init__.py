"""Personalization methods, one file each; importing this package registers them all (in report order)."""

from pllm.bench.methods import stats, zero_shot, rag, profile, adapters, head, coldstart, router  # noqa: F401, I001
