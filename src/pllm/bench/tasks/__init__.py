"""Benchmark tasks, one file each; importing this package registers them all."""

from pllm.bench.tasks import lamp1, lamp2, lamp3, lamp4, lamp5, lamp7, movielens  # noqa: F401
