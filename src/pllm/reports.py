"""One report writer for every evaluation: a folder holding report.md (a title, the command that reproduces it, the
machine it ran on, the sections), results.json and the plots as PNG files.

    report = Report("Federated cooking", command="pllm fed simulate --expert cooking ...")
    report.add("| round | accepted |", "|---|---|", "| 1 | 5 |")
    report.plot("rounds.png", lambda ax: ax.plot([0, 1], [0.0, 0.1]), size=(5.5, 3.4))
    report.write(Path("out/fed"), results)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pllm.extras import pyplot
from pllm.files import atomic_write

Draw = Callable[[Any], None]  # draws on a matplotlib Axes


@dataclass
class Report:
    title: str
    command: str = ""  # shown as "Reproduce with"
    machine: str = ""  # the CPU, where figures depend on it
    blocks: list[str] = field(default_factory=list)
    plots: list[tuple[str, Draw, tuple[float, float], int]] = field(default_factory=list)

    def add(self, *lines: str) -> Report:
        """A block of markdown lines (a paragraph, a table), followed by a blank line."""
        self.blocks.append("\n".join(lines))
        return self

    def plot(self, name: str, draw: Draw, *, size: tuple[float, float] = (6.5, 3.6), panels: int = 1) -> Report:
        """A plot drawn when the report is written, shown below the blocks; `draw` gets its Axes (a row of them
        where `panels` > 1)."""
        self.plots.append((name, draw, size, panels))
        return self

    def markdown(self) -> str:
        head = [f"# {self.title}", ""]
        if self.command:
            head += ["Reproduce with:", "", f"    {self.command}", ""]
        if self.machine:
            head += [self.machine, ""]
        images = [f"![{name.rsplit('.', 1)[0]}]({name})" for name, *_ in self.plots]
        return "\n".join([*head, *(f"{block}\n" for block in self.blocks), *images, ""])

    def write(self, folder: Path, results: Any = None) -> Path:
        """report.md, results.json (when given) and the plots in `folder`; returns report.md's path."""
        folder.mkdir(parents=True, exist_ok=True)
        if results is not None:
            atomic_write(folder / "results.json", json.dumps(results, indent=1) + "\n", mode=0o644)
        for name, draw, size, panels in self.plots:
            plt = pyplot()
            fig, axes = plt.subplots(1, panels, figsize=size)
            draw(axes)
            fig.tight_layout()
            fig.savefig(folder / name, dpi=120)
            plt.close(fig)
        path = folder / "report.md"
        atomic_write(path, self.markdown(), mode=0o644)
        return path
