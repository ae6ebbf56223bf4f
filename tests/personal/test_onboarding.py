"""A new user's first conversation: the questions `pllm chat` asks on a terminal while the vault is empty, their
answers stored as the user's own statements and facts (`pllm profile show` lists them), and skipping that writes
nothing; the same over HTTP for the page."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pllm.api.app import create_app
from pllm.config import Settings
from pllm.errors import UsageError
from pllm.http_serving import serve_background
from pllm.personal.onboarding import QUESTIONS, needs_onboarding, onboard
from pllm.personal.vault import create_vault

Run = Callable[..., subprocess.CompletedProcess[str]]
PASS = {"PLLM_PASSPHRASE": "s3cret"}


def chat_on_a_terminal(lines: list[str], timeout: float = 120) -> str:
    """`pllm chat` with a terminal for its input and output (onboarding is offered only there); each line is typed
    once the previous prompt is waiting. Returns everything the terminal showed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("pllm")), "chat", "-n", "16"], stdin=follower,
                            stdout=follower, stderr=follower, env={**os.environ, **PASS, "COLUMNS": "200"})
    os.close(follower)
    shown, deadline, pending = b"", time.monotonic() + timeout, list(lines)
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    shown += os.read(leader, 65536)
                except OSError:
                    break
            if pending and shown.rstrip().endswith((b"?", b"you>")):
                os.write(leader, (pending.pop(0) + "\n").encode())
                time.sleep(0.3)
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return shown.decode(errors="replace")


def test_answers_become_the_users_own_statements_and_facts(pllm_home: Path) -> None:
    vault = create_vault(pllm_home / "vault.db", "pw")
    assert needs_onboarding(vault)
    learned = dict(onboard(vault, {"name": "mara lind", "work": "a nurse at the city hospital", "people": "",
                                   "interests": "sailing and jazz"}))
    assert learned == {"name": "Mara Lind", "works as": "nurse at the city hospital", "interests": "sailing and jazz"}
    assert vault.user_name == "Mara Lind"  # the vault had no name: now it has the one she gave
    assert [d.content for d in vault.documents()] == ["My name is Mara Lind.", "I work as a nurse at the city "
                                                      "hospital.", "I am interested in sailing and jazz."]
    assert all(d.speaker == "" for d in vault.documents())  # her own words
    assert not needs_onboarding(vault)
    with pytest.raises(UsageError, match="no onboarding question 'age'"):
        onboard(vault, {"age": "41"})
    with pytest.raises(UsageError, match="over 300 characters"):
        onboard(vault, {"work": "x" * 301})
    vault.close()


def test_pllm_chat_asks_on_a_terminal_and_profile_show_lists_it(pllm: Run, pllm_home: Path) -> None:
    assert pllm("init", env=PASS).returncode == 0
    shown = chat_on_a_terminal(["I'm Mara", "I'm a marine biologist", "my partner Sam", "", "/exit"])
    assert all(q.text in shown for q in QUESTIONS[:3]), shown
    profile = json.loads(pllm("profile", "show", "--json", env=PASS).stdout)
    facts = {f["key"]: f["value"] for f in profile["facts"]}
    assert facts == {"name": "Mara", "works as": "marine biologist", "people": "my partner Sam"}
    assert "Mara" in profile["summary"]
    shown_table = pllm("profile", "show", env=PASS).stdout
    assert "marine biologist" in shown_table
    again = chat_on_a_terminal(["/exit"])  # the vault is no longer empty: not offered again
    assert QUESTIONS[0].text not in again


def test_skipping_writes_nothing(pllm: Run, pllm_home: Path) -> None:
    assert pllm("init", "--name", "Mara", env=PASS).returncode == 0
    def held() -> dict[str, object]:
        return {k: v for k, v in json.loads(pllm("profile", "export", env=PASS).stdout).items() if k != "exported_at"}

    before = held()
    shown = chat_on_a_terminal(["/skip", "/exit"])
    assert QUESTIONS[0].text in shown
    assert held() == before
    piped = pllm("chat", env=PASS, stdin="")  # no terminal: never asked
    assert piped.returncode == 0 and QUESTIONS[0].text not in piped.stdout + piped.stderr


def test_the_page_gets_the_same_questions_over_http(pllm_home: Path) -> None:
    vault = create_vault(pllm_home / "vault.db", "pw")
    with serve_background(create_app(Settings(api_token="tok"), vault)) as url:
        auth = {"Authorization": "Bearer tok"}
        offer = httpx.get(url + "/v1/profile/onboarding", headers=auth).json()
        assert offer["offered"] and [q["key"] for q in offer["questions"]] == ["name", "work", "people", "interests"]
        assert httpx.get(url + "/v1/profile/onboarding").status_code == 401
        bad = httpx.post(url + "/v1/profile/onboarding", headers=auth, json={"age": "41"})
        assert bad.status_code == 400 and "age" in bad.json()["error"]["message"]
        done = httpx.post(url + "/v1/profile/onboarding", headers=auth,
                          json={"name": "Mara", "interests": "sailing"}).json()
        assert {(f["key"], f["value"]) for f in done["learned"]} == {("name", "Mara"), ("interests", "sailing")}
        assert "Mara" in done["summary"]
        assert httpx.get(url + "/v1/profile/onboarding", headers=auth).json()["offered"] is False
    vault.close()
