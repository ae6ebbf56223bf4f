"""Running an HTTP service: `run_server` (until SIGTERM, never needing a SIGKILL), and on loopback, an app in a
background thread (`serve_background`) or a command as its own process (`serve_process`, `start_server`), ended with
its owner.

    with serve_background(create_app(settings, vault)) as url: ...
    with serve_process(["pllm", "cloud", "serve", "--port", str(port)], port, env, log) as url: ...
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from pllm.errors import PllmError
from pllm.lm.runtime import stop_generating
from pllm.processes import end_with_owner, stop_process


class ServerStartError(PllmError):
    """A server started as its own process did not come up."""


SHUTDOWN_GRACE_S = 5  # after SIGTERM, how long open requests may finish before they are cancelled


def run_server(app: FastAPI, host: str, port: int) -> None:
    """Serve `app` until SIGTERM or Ctrl-C, and exit within a few seconds of it even with a request in flight: the
    generation in progress stops at its next token (`stop_generating`), open connections get SHUTDOWN_GRACE_S to
    close, and a prefill that cannot be interrupted (one llama.cpp call) is cut by ending the process. A service
    manager should never need SIGKILL (uvicorn alone waits for open connections without a limit)."""
    import threading

    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            stop_generating.set()
            if not self.should_exit:  # the first signal: a last resort if the graceful path hangs
                last_resort = threading.Timer(SHUTDOWN_GRACE_S + 5, os._exit, args=(128 + sig,))
                last_resort.daemon = True  # a process that ends in time is not held back by it
                last_resort.start()
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signal once shut down, which would kill the process before its owner's
            # `finally` (the vault's close) runs: a shutdown it asked for ends normally instead, with status 0
            self._captured_signals = []

    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    Server(config).run()


@contextmanager
def serve_background(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run `app` on a real socket in a background thread (port 0: a free one); yields its base URL."""
    import threading

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{app.title} did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_process(command: list[str], port: int, env: dict[str, str], log: Path, ready_path: str = "/v1/models",
                  timeout_s: float = 120.0) -> Iterator[str]:
    """Start a server as its own process (its output into `log`), wait until GET `ready_path` answers 200 on
    loopback, yield its base URL, stop it (SIGTERM to its group, SIGKILL after 20 s). ServerStartError, with the
    log's last line, when it exits or stays silent."""
    process = start_server(command, port, env, log, ready_path, timeout_s)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process, group=True)


def start_server(command: list[str], port: int, env: dict[str, str], log: Path, ready_path: str = "/v1/models",
                 timeout_s: float = 120.0) -> subprocess.Popen[bytes]:
    """Start a server as its own process group (its output into `log`; it ends with this thread: `end_with_owner`)
    and return it once GET `ready_path` answers 200 on loopback. ServerStartError, with the log's last line, when it
    exits or stays silent (it is stopped first)."""
    import httpx

    with log.open("w") as out:  # its own process group: a server that starts helpers is stopped with them
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=end_with_owner)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if process.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
                raise ServerStartError(f"{Path(command[0]).name} exited with {process.returncode}: {tail[0]}")
            try:
                if httpx.get(base + ready_path, timeout=2.0).status_code == 200:
                    return process
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServerStartError(f"the server on port {port} did not answer within {timeout_s:.0f} s")
            time.sleep(0.5)
    except BaseException:
        stop_process(process, group=True)
        raise
