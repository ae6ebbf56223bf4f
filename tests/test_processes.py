"""Children end with their owner however it ends: a program that is not pllm by the kernel's parent-death signal,
a pllm child (the API's adaptation job) by watching its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from pllm.http_serving import free_port
from pllm.processes import stop_process

OWNER = """
import subprocess, sys, time
from pllm.processes import end_with_owner, owned_env
kind, command = sys.argv[1], sys.argv[2:]
if kind == "pllm":
    child = subprocess.Popen(command, env=owned_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
else:
    child = subprocess.Popen(command, preexec_fn=end_with_owner)
print(child.pid, flush=True)
time.sleep(600)
"""


def _orphan_after_kill(kind: str, command: list[str], wait_ready: float) -> psutil.Process:
    """Start `command` from an owner process, SIGKILL the owner (it gets no chance to clean up); the child."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER, kind, *command], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        child = psutil.Process(int(owner.stdout.readline()))
        try:
            child.wait(timeout=wait_ready)  # it must still be running, not have failed on its own
            raise AssertionError(f"{command[0]} exited before its owner: {child}")
        except psutil.TimeoutExpired:
            pass
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    return child


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_program_that_is_not_pllm_dies_with_its_owner() -> None:
    child = _orphan_after_kill("other", ["sleep", "600"], wait_ready=0.5)
    child.wait(timeout=10)  # (psutil cannot read the status of another's child; TimeoutExpired if it lives on)
    assert not child.is_running()


def test_a_pllm_child_stops_itself_once_its_owner_is_gone(tmp_path: Path) -> None:
    """The API starts `pllm adapt` from a request's worker thread, which may end long before the server does, so
    the parent-death signal would stop it too early; the child watches its parent instead."""
    command = [str(Path(sys.executable).with_name("pllm")), "serve", "--port", str(free_port())]
    child = _orphan_after_kill("pllm", command, wait_ready=5.0)
    try:
        child.wait(timeout=15)
        assert not child.is_running()
    finally:
        if child.is_running():
            os.kill(child.pid, signal.SIGKILL)


def test_stop_process_ends_a_group_that_ignores_sigterm() -> None:
    ignores_term = "import signal, subprocess; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); " \
                   "subprocess.run(['sleep', '600'])"  # the sleep inherits the ignored SIGTERM
    stubborn = subprocess.Popen([sys.executable, "-c", ignores_term], start_new_session=True, stdout=subprocess.PIPE)
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"\n"  # SIGTERM is ignored from here on
    assert stop_process(stubborn, group=True, grace_s=1.0) == -signal.SIGKILL
    alive = [p for p in psutil.process_iter(["cmdline", "status"]) if p.info["cmdline"] == ["sleep", "600"]
             and p.info["status"] != psutil.STATUS_ZOMBIE]  # killed, and only not yet reaped by init
    assert not [p for p in alive if _group(p.pid) == stubborn.pid]


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
