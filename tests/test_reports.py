"""The one report writer: report.md with its command and machine, results.json, and every plot as a PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pllm.reports import Report


def test_a_report_writes_its_markdown_results_and_plots(tmp_path: Path) -> None:
    def line(ax: Any) -> None:
        ax.plot([0, 1, 2], [0.1, 0.3, 0.2])

    def pair(axes: Any) -> None:
        axes[0].bar(["a", "b"], [1, 2])
        axes[1].bar(["c"], [3])

    path = (Report("Federated cooking", command="pllm fed simulate --expert cooking", machine="Measured on a CPU.")
            .add("| round | kept |", "|---|---|", "| 1 | yes |")
            .plot("rounds.png", line).plot("two.png", pair, panels=2)
            .write(tmp_path / "out", {"rounds": [1]}))
    text = path.read_text()
    assert text.startswith("# Federated cooking\n") and "    pllm fed simulate --expert cooking" in text
    assert "Measured on a CPU." in text and "| 1 | yes |" in text
    assert "![rounds](rounds.png)" in text and "![two](two.png)" in text
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == {"rounds": [1]}
    for name in ("rounds.png", "two.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
