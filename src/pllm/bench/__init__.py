"""Bench tier: speed and memory benchmarks (`pllm bench`) and personalization evaluation (`pllm eval`).

It may drive every tier, as a researcher would.
"""
