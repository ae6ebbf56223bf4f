"""`pllm cloud serve` as a user starts it: the real command, a real loopback port, a key from `pllm cloud keys add`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import openai

from pllm.http_serving import free_port, serve_process


def test_pllm_cloud_serve_answers_the_openai_client(pllm: Callable[..., subprocess.CompletedProcess[str]],
                                                    pllm_home: Path, tmp_path: Path) -> None:
    added = pllm("cloud", "keys", "add", "laptop")
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert key.startswith("pllm-") and key not in (pllm_home / "cloud" / "cloud.db").read_bytes().decode("latin-1")
    listed = pllm("cloud", "keys", "list", "--json")
    assert "laptop" in listed.stdout and key not in listed.stdout

    port = free_port()
    command = [str(Path(sys.executable).with_name("pllm")), "cloud", "serve", "--port", str(port)]
    with serve_process(command, port, os.environ.copy(), tmp_path / "serve.log", ready_path="/healthz") as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        reply = client.chat.completions.create(model="pllm-foundation", max_tokens=8,
                                               messages=[{"role": "user", "content": "Name a colour."}])
        assert reply.choices[0].message.content and reply.usage and reply.usage.completion_tokens > 0
        assert httpx.post(f"{url}/v1/chat/completions", json={"messages": []},
                          headers={"Authorization": "Bearer pllm-wrong"}).status_code == 401
        assert pllm("cloud", "keys", "revoke", "laptop").returncode == 0
        try:
            client.chat.completions.create(model="pllm-foundation", max_tokens=4,
                                           messages=[{"role": "user", "content": "hi"}])
            raise AssertionError("a revoked key was accepted")
        except openai.AuthenticationError:
            pass
