"""The device-local API: `pllm serve`, OpenAI-compatible, over the user's own model (personal/serving.py)."""
