"""Optional parts of pllm and what they need: the device itself is `pip install pllm`; the T-tier's models, the
federated rounds and the benchmarks come with extras (`make setup` installs them all).

    extra("flwr", "fed")        # the module, or one line naming the extra to install
    plt = pyplot()              # matplotlib, drawing to files (reports), from the `bench` extra
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from pllm.errors import UsageError

EXTRAS = {
    "fed": "federated experts on Flower (flwr and its simulation engine)",
    "bench": "evaluations and their reports (matplotlib, rouge-score)",
    "voice": "speech to text on the device (faster-whisper and the Whisper base model's chunk packages)",
    "cloud": "the T-tier's embedded models (Qwen2.5 1.5B Instruct and Gemma 3 270M, as chunk packages)",
}


def extra(module: str, name: str) -> ModuleType:
    """Import `module`, or fail in one line that names the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"this needs pllm's `{name}` extra ({EXTRAS[name]}): pip install 'pllm[{name}]' "
                         "(or `make setup`, which installs every extra)") from None


def pyplot() -> Any:
    """matplotlib's pyplot, drawing to files only (no display is ever needed): every report's plots."""
    matplotlib = extra("matplotlib", "bench")
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")
