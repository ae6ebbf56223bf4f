#!/usr/bin/env bash
# The main job, as a user would run it: check the machine, then ask the on-device model, streamed, with its speed.
# `make demo` runs this inside the project's virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

echo "== pllm doctor"
pllm doctor
echo
echo "== pllm ask (the packaged SmolLM2-135M-Instruct, on this CPU)"
pllm ask "Say hello and tell me one fun fact about lighthouses." --stats
