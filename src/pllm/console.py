"""Terminal output shared by every tier's commands: the consoles, JSON printing, the settings a command runs with.

Only command modules import this; domain code returns values and never prints.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pllm.config import Settings, get_settings

# soft_wrap: a message is one line however narrow the terminal (scripts and tests read them line by line).
console = Console(highlight=False, soft_wrap=True, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


class LoggedProgress(Progress):
    """A rich Progress that, where stderr is no terminal (a CI log, `| tee`), prints a plain line at each tenth of
    a task and at its end instead of the bar, so a long run that is piped still shows life."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._logged: dict[TaskID, int] = {}

    def update(self, task_id: TaskID, **kwargs: Any) -> None:  # type: ignore[override]
        super().update(task_id, **kwargs)
        self._log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id)

    def _log(self, task_id: TaskID) -> None:
        if not self.disable:
            return
        with self._lock:
            task = self._tasks[task_id]
            total, done = task.total, int(task.completed)
        if not total or self._logged.get(task_id) == done:
            return
        if done % max(1, int(total) // 10) == 0 or done >= total:
            self._logged[task_id] = done
            err_console.print(f"{task.description}: {done}/{int(total)}", markup=False)


def progress_bar(label: str = "{task.description}") -> Progress:
    """A rich progress bar on stderr that vanishes when done; piped, a plain line each tenth (LoggedProgress)."""
    return LoggedProgress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=err_console, transient=True, disable=not err_console.is_terminal)


@contextlib.contextmanager
def joining_progress(label: str = "joining the T-model from its packages") -> Iterator[Callable[[int, int], None]]:
    """An (bytes done, bytes in all) callback that shows a bar on a terminal once bytes start to move (a model
    already joined shows nothing)."""
    bar = Progress(TextColumn(label), BarColumn(), DownloadColumn(), TimeElapsedColumn(), console=err_console,
                   transient=True, disable=not err_console.is_terminal)
    task: list[Any] = []

    def on_bytes(done: int, total: int) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task(label, total=total))
        bar.update(task[0], completed=done)

    try:
        yield on_bytes
    finally:
        if task:
            bar.stop()


class StepProgress:
    """Progress of a run of steps with a loss: a rich bar (step, loss, ETA) on a terminal, a plain line on stderr
    every few steps when output is piped (logs, `make demo`), so a long run always shows life.

    The ETA is measured, from the steps done so far, never a constant.
    """

    def __init__(self, label: str, *, every: int = 5, events: bool = False):
        self.label, self.every, self.events = label, every, events  # events: JSON lines for a watching process
        self.terminal = err_console.is_terminal and not events
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=err_console, transient=True,
                                 disable=not self.terminal)
        self.task = self.progress.add_task(label, total=None, loss="-")
        self.first_at: float | None = None
        self.first_step = 0
        self.phase_at = time.perf_counter()

    def __enter__(self) -> StepProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def note(self, text: str) -> None:
        """A phase before the steps (loading, preparing): the bar's label, or a line when piped."""
        self.phase_at = time.perf_counter()
        self.progress.update(self.task, description=f"{self.label}: {text}")
        if self.events:
            self._event({"event": "phase", "phase": text})
        elif not self.terminal:
            err_console.print(f"{self.label}: {text}")

    def step(self, step: int, total: int, loss: float) -> None:
        now = time.perf_counter()
        if self.first_at is None:  # the first step done in this process: rates are measured from it
            self.first_at, self.first_step, self.first_seconds = now, step, now - self.phase_at
            self.progress.reset(self.task, total=total, completed=step, description=self.label,
                                loss=f"{loss:.3f}")
        self.progress.update(self.task, total=total, completed=step, loss=f"{loss:.3f}")
        done = step - self.first_step
        per_step = (now - self.first_at) / done if done > 0 else self.first_seconds
        eta = math.ceil(per_step * (total - step))
        if self.events:
            self._event({"event": "step", "step": step, "total": total, "loss": round(loss, 4), "eta_s": eta})
            return
        if self.terminal or not (step == self.first_step or step % self.every == 0 or step == total):
            return
        err_console.print(f"{self.label}: step {step}/{total}, loss {loss:.3f}, {per_step:.1f} s/step, "
                          f"about {eta} s left")

    @staticmethod
    def _event(event: dict[str, Any]) -> None:
        sys.stderr.write(json.dumps(event) + "\n")
        sys.stderr.flush()


def print_json(obj: Any) -> None:
    """One JSON document on stdout, nothing else (scripts parse it)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=None) + "\n")
    sys.stdout.flush()


def settings_of(ctx: typer.Context) -> Settings:
    """The settings for this invocation: the root flags (kept on ctx.obj) over env, file and defaults."""
    root = ctx.find_root()
    overrides = root.obj or {}
    return get_settings(**overrides)
