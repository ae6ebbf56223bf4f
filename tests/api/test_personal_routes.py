"""The device API's personal routes against the real packaged model and a real vault, on a loopback socket:
feedback that makes an answer memory, the profile behind a token (show, export, forget), and adaptation started in
its own process, followed to the end, and served on the next request."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx
import pytest

from pllm.api.app import create_app
from pllm.config import Settings
from pllm.http_serving import serve_background
from pllm.personal.profile import learn_facts
from pllm.personal.retrieve import Retriever
from pllm.personal.vault import Vault

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PASSPHRASE = "s3cret"
NOTE = "My boat is called Seabird.\n\nMy sister is called Ingrid.\n\nOn Sundays I sail to Skjervoy with Ingrid."


@pytest.fixture
def url(vault: Vault) -> Iterator[str]:
    with serve_background(create_app(Settings(api_token=TOKEN), vault, PASSPHRASE)) as where:
        yield where


def _chat(url: str, text: str, **extra: object) -> dict:
    got = httpx.post(url + "/v1/chat/completions", headers=AUTH, timeout=120,
                     json={"model": "pllm", "messages": [{"role": "user", "content": text}], "max_tokens": 12,
                           **extra})
    assert got.status_code == 200, got.text
    return got.json()  # type: ignore[no-any-return]


def test_feedback_names_the_answer_and_an_edit_becomes_memory(url: str, vault: Vault) -> None:
    answer = _chat(url, "Where do I sail on Sundays?")
    edit = {"id": answer["id"], "kind": "edit", "value": "You sail to Skjervoy with Ingrid."}
    got = httpx.post(url + "/v1/feedback", headers=AUTH, json=edit)
    assert got.status_code == 200, got.text
    logged = got.json()["interaction"]
    assert vault.conn.execute("SELECT kind, value FROM feedback WHERE interaction_id = ?",
                              (logged,)).fetchall() == [("edit", edit["value"])]
    exchange = next(i for i in Retriever.from_vault(vault).items if i.key == f"interaction:{logged}")
    assert exchange.text.endswith("You sail to Skjervoy with Ingrid.")  # the user's correction, retrievable
    for body, status in [({"id": "chatcmpl-nope", "kind": "up"}, 404), ({"id": answer["id"], "kind": "meh"}, 400),
                         ({"id": answer["id"], "kind": "rating", "value": "9"}, 400),
                         ({"id": answer["id"], "kind": "edit"}, 400)]:
        bad = httpx.post(url + "/v1/feedback", headers=AUTH, json=body)
        assert bad.status_code == status and set(bad.json()["error"]) == {"message", "type", "param", "code"}


def test_the_profile_needs_a_token_even_on_loopback(vault: Vault) -> None:
    with serve_background(create_app(Settings(), vault, PASSPHRASE)) as open_url:
        refused = httpx.get(open_url + "/v1/profile")
        assert refused.status_code == 403 and "PLLM_API_TOKEN" in refused.json()["error"]["message"]
        assert httpx.get(open_url + "/v1/models").status_code == 200  # chat and models stay open on loopback


def test_the_profile_shown_exported_and_forgotten(url: str, vault: Vault) -> None:
    assert httpx.get(url + "/v1/profile").status_code == 401
    profile = httpx.get(url + "/v1/profile", headers=AUTH).json()
    assert profile["name"] == "Mara" and profile["counts"]["documents"] == 1
    exported = httpx.get(url + "/v1/profile/export", headers=AUTH).json()
    assert [d["content"] for d in exported["documents"]] == [NOTE]
    assert httpx.post(url + "/v1/profile/forget", headers=AUTH, json={}).status_code == 400  # say what
    forgot = httpx.post(url + "/v1/profile/forget", headers=AUTH, json={"query": "Seabird"}).json()
    assert forgot["documents"] == 1 and forgot["retraining"] is None  # no adapter trained on it: nothing to redo
    assert "Seabird" not in httpx.get(url + "/v1/profile/export", headers=AUTH).text


def _follow(url: str, seen: list[dict], deadline_s: float = 540) -> dict:
    ends = time.monotonic() + deadline_s
    while time.monotonic() < ends:
        status = httpx.get(url + "/v1/adapt", headers=AUTH).json()
        seen.append(status)
        if status["state"] != "running":
            return status
        time.sleep(1)
    raise AssertionError(f"adaptation still running after {deadline_s} s: {seen[-1]}")


def test_adaptation_runs_in_its_own_process_and_is_served_next(url: str, vault: Vault) -> None:
    learn_facts(vault, NOTE, source="document:1")  # as `pllm ingest` does: the gate asks about them in new words
    assert httpx.get(url + "/v1/adapt", headers=AUTH).json()["state"] == "idle"
    started = httpx.post(url + "/v1/adapt", headers=AUTH, json={})
    assert started.status_code == 202, started.text
    assert started.json()["pid"] != os.getpid()  # trained in a child process, never in the server
    assert httpx.post(url + "/v1/adapt", headers=AUTH).status_code == 409  # one at a time
    _chat(url, "Say hello.")  # the server keeps answering while it trains
    seen: list[dict] = []
    done = _follow(url, seen)
    assert done["state"] == "done", done
    assert any(s["step"] > 0 and s["total"] >= s["step"] for s in seen)  # progress came through as it trained
    version = done["report"]["version"]
    assert done["report"]["promoted"], done["report"]["reason"]
    models = httpx.get(url + "/v1/models", headers=AUTH).json()["data"]
    assert [m["id"] for m in models if m["active"]] == [f"pllm:{version}"]
    _chat(url, "What is my boat called?")
    assert vault.conn.execute("SELECT adapter_version FROM interactions ORDER BY id DESC").fetchone()[0] == version
    # Forgetting what it trained on retires it: the serving adapter goes, and with retrain off nothing restarts.
    forgot = httpx.post(url + "/v1/profile/forget", headers=AUTH, json={"query": "Seabird", "retrain": False}).json()
    assert forgot["retired_adapters"] == [version] and forgot["active_retired"] and forgot["retraining"] is None
    gone = httpx.post(url + "/v1/chat/completions", headers=AUTH,
                      json={"model": f"pllm:{version}", "messages": [{"role": "user", "content": "hi"}]})
    assert gone.status_code == 404
    _chat(url, "Say hello.")
    assert vault.conn.execute("SELECT adapter_version FROM interactions ORDER BY id DESC").fetchone()[0] is None
