"""A missing extra is one line that names it, not an ImportError."""

from __future__ import annotations

import sys

import pytest

from pllm.errors import UsageError
from pllm.extras import extra, pyplot


def test_a_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "flwr", None)  # as if Flower were not installed
    with pytest.raises(UsageError, match=r"pip install 'pllm\[fed\]'") as caught:
        extra("flwr", "fed")
    assert "\n" not in str(caught.value)


def test_an_installed_extra_is_the_module_and_plots_go_to_files() -> None:
    assert extra("json", "bench").dumps([1]) == "[1]"
    assert pyplot().get_backend().lower() == "agg"
