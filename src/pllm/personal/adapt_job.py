"""`pllm adapt` in its own process, watched: what the device API starts on POST /v1/adapt and reports on GET.

Training never runs in the serving process (it would take the cores and the memory answers need). A child
`python -m pllm adapt --json --events` trains, with the vault's passphrase in its environment only; its progress
events (JSON lines on stderr, `StepProgress(events=True)`) are read as they come, and its JSON report is the
result. The server serves a version the child promoted from the next request on: it reads the active version per
request.

    job = AdaptJob(settings, passphrase)
    job.start()
    job.status().as_dict()   # {"state": "running", "phase": "", "step": 5, "total": 20, "loss": 1.9, ...}
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from pllm.config import Settings
from pllm.errors import PllmError
from pllm.processes import owned_env, stop_process

LAST_LINES = 20  # of the child's stderr, kept to explain a failure


class AdaptRunningError(PllmError):
    """An adaptation is already running: one at a time."""

    http_status = 409


class AdaptUnavailableError(PllmError):
    """The server cannot start a training process (it was not given the vault's passphrase): its state, not a
    failure, so 409 as for a job already running."""

    http_status = 409


@dataclass(frozen=True)
class AdaptStatus:
    state: str = "idle"  # idle | running | done | failed
    phase: str = ""  # what the run is doing before its steps: loading, preparing, gating
    step: int = 0
    total: int = 0
    loss: float | None = None
    eta_s: int | None = None  # measured from the steps so far (see StepProgress)
    pid: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    report: dict[str, Any] | None = None  # `pllm adapt --json`: version, promoted, reason, figures
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _event(line: str) -> dict[str, Any] | None:
    """A progress event of the child (`pllm adapt --events` writes one JSON object a line), or None."""
    if not line.startswith("{"):
        return None
    with contextlib.suppress(json.JSONDecodeError):
        event = json.loads(line)
        return event if isinstance(event, dict) and "event" in event else None
    return None


class AdaptJob:
    def __init__(self, settings: Settings, passphrase: str | None) -> None:
        self.settings, self._passphrase = settings, passphrase
        self._status = AdaptStatus()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None

    def status(self) -> AdaptStatus:
        with self._lock:
            return self._status

    def start(self, *, force: bool = False) -> AdaptStatus:
        """Start `pllm adapt` in a child process; raises AdaptRunningError while one runs."""
        if self._passphrase is None:
            raise AdaptUnavailableError("this server was started without the vault's passphrase, so it cannot start "
                                        "training: run `pllm adapt` yourself")
        with self._lock:
            if self._status.state == "running":
                raise AdaptRunningError(f"an adaptation is already running (pid {self._status.pid})")
            env = {**owned_env(), "PLLM_PASSPHRASE": self._passphrase, "PLLM_HOME": str(self.settings.home),
                   "PLLM_THREADS": str(self.settings.threads)}
            if self.settings.model is not None:
                env["PLLM_MODEL"] = str(self.settings.model)
            command = [sys.executable, "-m", "pllm", "adapt", "--json", "--events", *(["--force"] if force else [])]
            self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                             env=env, stdin=subprocess.DEVNULL)
            self._status = AdaptStatus("running", pid=self._process.pid, started_at=time.time())
            threading.Thread(target=self._watch, args=(self._process,), name="adapt-watch", daemon=True).start()
            return self._status

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)

    def _watch(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None and process.stdout is not None
        tail: list[str] = []
        for line in process.stderr:
            line = line.strip()
            event = _event(line)
            if event is None:
                tail = [*tail, line][-LAST_LINES:]  # what the child said in words: the error, if it fails
            elif event.get("event") == "step":
                self._update(step=int(event["step"]), total=int(event["total"]), loss=float(event["loss"]),
                             phase="training", eta_s=event.get("eta_s"))
            elif event.get("event") == "phase":
                self._update(phase=str(event["phase"]))
        out = process.stdout.read()
        code = process.wait()
        report = None
        with contextlib.suppress(json.JSONDecodeError):  # a crash may leave anything on stdout
            report = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
        if code == 0 and isinstance(report, dict):
            self._update(state="done", report=report, ended_at=time.time(), eta_s=0)
        else:
            why = next((t for t in reversed(tail) if t.startswith("error:")), tail[-1] if tail else "")
            self._update(state="failed", ended_at=time.time(), report=report,
                         error=why or f"the training process exited with status {code}")

    def close(self) -> None:
        """Stop a running child (the server is going away); its checkpoint lets the next `pllm adapt` resume."""
        with self._lock:
            process = self._process
        if process is not None:
            stop_process(process, grace_s=30)
