"""pllm: personal language models that live on the user's own device.

The small public API: `get_settings()` for configuration, `load_runtime()` for a ready llama.cpp runtime.
Run `pllm --help` for the command line, or `python -m pllm`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pllm")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
