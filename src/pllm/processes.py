"""Child processes that end with their owner: how pllm starts them, stops them, and how a pllm child notices that
its owner is gone.

Two ways a child learns that its owner died, because one does not fit all:
- `end_with_owner` (Linux PR_SET_PDEATHSIG) for programs that are not pllm (Flower's SuperNode, llama-server). The
  kernel signals the child when the *thread* that started it ends, so it is only for children started from a
  thread that lives as long as its owner (the main thread of a command).
- `OWNER_ENV` for pllm children started from any thread (the API's adaptation job runs from a request's worker
  thread, which may end long before the server): the child watches its parent and stops itself when it changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

OWNER_ENV = "PLLM_OWNER_PID"  # set for a pllm child: the pid of the process it must not outlive
_PR_SET_PDEATHSIG = 1


def _prctl() -> Any:
    """libc's prctl, looked up in the parent: the child, between fork and exec, may only call it."""
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl
    return None


_PRCTL = _prctl()


def end_with_owner() -> None:
    """`preexec_fn` for a child that is not pllm: SIGTERM when the thread that started it ends, however it ends
    (SIGKILL included), so it never outlives its owner. Does nothing where the kernel has no such signal."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def owned_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a pllm child that must end with this process (see `watch_owner`)."""
    return {**(os.environ if env is None else env), OWNER_ENV: str(os.getpid())}


def watch_owner(poll_s: float = 1.0) -> None:
    """In a pllm process started with `owned_env`: a daemon thread that sends this process SIGTERM once the owner
    is gone (it was reparented), so the command stops as on Ctrl-C (an adaptation keeps its checkpoint)."""
    owner = os.environ.pop(OWNER_ENV, "")
    if not owner.isdigit():
        return

    def watch() -> None:  # (popped above, so this process's own children are not told to watch it)
        while os.getppid() == int(owner):
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


def stop_process(process: subprocess.Popen[Any], *, group: bool = False, grace_s: float = 20.0) -> int:
    """SIGTERM, `grace_s` to finish, then SIGKILL; with `group` the whole process group it leads (a server that
    started helpers). Its exit status."""
    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)

    if process.poll() is None:
        send(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    if group or process.poll() is None:  # a group's members may outlive its leader
        send(signal.SIGKILL)
    return process.wait()
