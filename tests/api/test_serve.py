"""`pllm serve` against the real packaged model, a real vault and real encrypted adapters, on a loopback socket:
the `openai` client unchanged, a promoted adapter served without a restart, concurrent requests for different
adapters each answered by their own, and bad requests answered 4xx in OpenAI's shape."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from openai import OpenAI

from pllm.api.app import create_app
from pllm.config import Settings
from pllm.http_serving import free_port, serve_background, start_server
from pllm.personal.adapters import AdapterStore
from pllm.personal.vault import Vault
from pllm.processes import stop_process

HELLO = [{"role": "user", "content": "Say hello to me."}]
Run = Callable[..., subprocess.CompletedProcess[str]]
PASSPHRASE = "s3cret"
NOTE = "My boat is called Seabird and I sail it on Sundays."


def _store_adapter(store: AdapterStore, path: Path) -> str:
    return store.save(gguf=path.read_bytes(), peft=b"", base_model="SmolLM2",
                      lora={"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
                      stats={})


@pytest.fixture
def served(vault: Vault, pllm_home: Path, random_lora: Callable[..., Path]) -> Iterator[tuple[str, AdapterStore]]:
    store = AdapterStore(vault, pllm_home / "adapters")
    for seed in (1, 2):
        _store_adapter(store, random_lora(seed=seed))
    store.promote("v0001")
    with serve_background(create_app(Settings(), vault)) as url:
        yield url, store


def _ask(client: OpenAI, model: str, **kw: object) -> str:
    out = client.chat.completions.create(model=model, messages=HELLO, max_tokens=12, **kw)  # type: ignore[call-overload]
    return str(out.choices[0].message.content)


def test_the_openai_client_talks_to_it_unchanged(served: tuple[str, AdapterStore], vault: Vault) -> None:
    url, _ = served
    client = OpenAI(base_url=url + "/v1", api_key="unused-on-loopback")
    ids = [m.id for m in client.models.list().data]
    assert ids[0] == "pllm" and {"pllm:v0001", "pllm:v0002"} <= set(ids) and len(ids) == 4  # + the base model
    whole = client.chat.completions.create(model="pllm", messages=[{"role": "user", "content": "What is my boat "
                                                                    "called?"}], max_tokens=16)
    assert whole.choices[0].message.content and whole.usage and whole.usage.prompt_tokens > 20  # the note is in it
    chunks = list(client.chat.completions.create(model="pllm", messages=HELLO, max_tokens=12, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 3 and streamed == _ask(client, "pllm")  # the same answer, piece by piece
    logged = vault.conn.execute("SELECT client, adapter_version FROM interactions").fetchall()
    assert len(logged) == 3 and {tuple(row) for row in logged} == {("api", "v0001")}


def test_a_promoted_adapter_is_served_on_the_next_request(served: tuple[str, AdapterStore], pllm: Run,
                                                          vault: Vault) -> None:
    url, _ = served
    client = OpenAI(base_url=url + "/v1", api_key="x")
    base_model = next(m.id for m in client.models.list().data if getattr(m, "kind", "") == "base")
    one, two, base = _ask(client, "pllm:v0001"), _ask(client, "pllm:v0002"), _ask(client, base_model)
    assert len({one, two, base}) == 3  # each adapter changes the answer
    assert _ask(client, "pllm") == one
    # Another process promotes, as `pllm adapt` does at the end of a run; the server is not restarted.
    promoted = pllm("adapters", "promote", "v0002", env={"PLLM_PASSPHRASE": PASSPHRASE})
    assert promoted.returncode == 0, promoted.stderr
    # Active now, v0002 runs folded into a copy of the model (merge_adapters): its weights rounded to Q8_0 again,
    # which can change a word of this random adapter's answer, so it is compared with itself, not with `two`.
    now = _ask(client, "pllm")
    assert now not in (one, base) and now == _ask(client, "pllm:v0002")
    assert [m.id for m in client.models.list().data if getattr(m, "active", False)] == ["pllm:v0002"]
    assert vault.conn.execute("SELECT adapter_version FROM interactions ORDER BY id DESC LIMIT 1").fetchone() == \
        ("v0002",)


def test_concurrent_requests_for_different_adapters_each_get_their_own(served: tuple[str, AdapterStore],
                                                                       vault: Vault) -> None:
    url, _ = served
    client = OpenAI(base_url=url + "/v1", api_key="x")
    models = ("pllm:v0001", "pllm:v0002")
    _ask(client, "pllm")  # the first logged question puts 'hello' among the interests; from here the prompt is fixed
    # Alone, each adapter's answer just after a switch (the KV cache cleared) and with the same prompt just run (its
    # prefix reused): llama.cpp's numbers differ slightly between the two, so either may come up below.
    own = {m: {_ask(client, m) for _ in range(2)} for m in reversed(models)}
    assert not own[models[0]] & own[models[1]]

    def stream(model: str) -> list[str]:
        out = []
        for _ in range(2):
            chunks = client.chat.completions.create(model=model, messages=HELLO, max_tokens=12, stream=True)
            out.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
        return out

    with ThreadPoolExecutor(max_workers=2) as pool:  # a thread's exception comes back through its future
        got = dict(zip(models, pool.map(stream, models), strict=True))
    assert all(set(texts) <= own[m] for m, texts in got.items()), (got, own)
    # The adapter logged with each answer is the one applied when its last token came: never switched under it.
    last = vault.conn.execute("SELECT adapter_version FROM interactions ORDER BY id DESC LIMIT 4").fetchall()
    assert sorted(v for (v,) in last) == ["v0001", "v0001", "v0002", "v0002"]


def test_bad_requests_get_4xx_in_openais_shape(served: tuple[str, AdapterStore]) -> None:
    url, _ = served
    cases = [({"messages": []}, 400), ({"model": "pllm"}, 400), ({"messages": HELLO, "max_tokens": 0}, 400),
             ({"messages": HELLO, "model": "nope"}, 404), ({"messages": HELLO, "model": "pllm:v0042"}, 404),
             ({"messages": [{"role": "user", "content": "word " * 5000}], "model": "pllm"}, 413),
             ({"messages": [{"role": "user", "content": "x" * 2_000_000}]}, 413),
             ({"messages": [{"role": "assistant", "content": "hi"}]}, 400)]
    for body, status in cases:
        for stream in (False, True):
            got = httpx.post(url + "/v1/chat/completions", json={**body, "stream": stream}, timeout=60)
            assert got.status_code == status, (body.get("model"), stream, got.text[:200])
            assert set(got.json()["error"]) == {"message", "type", "param", "code"}


def test_a_token_is_required_once_set(vault: Vault) -> None:
    with serve_background(create_app(Settings(api_token="t0ken"), vault)) as url:
        assert httpx.get(url + "/healthz").status_code == 200
        assert httpx.get(url + "/v1/models").status_code == 401
        assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        client = OpenAI(base_url=url + "/v1", api_key="t0ken")
        assert client.models.list().data


def test_binding_beyond_loopback_needs_a_token(pllm: Run) -> None:
    refused = pllm("serve", "--host", "0.0.0.0", "--port", "8798", env={"PLLM_API_TOKEN": ""})
    assert refused.returncode == 2 and refused.stderr.startswith("error: binding 0.0.0.0")
    assert "Traceback" not in refused.stderr


def test_adapter_versions_promoted_and_rolled_back_over_http(served: tuple[str, AdapterStore]) -> None:
    url, store = served
    listed = httpx.get(url + "/v1/adapters").json()["data"]
    assert [(v["version"], v["active"]) for v in listed] == [("v0001", True), ("v0002", False)]
    assert httpx.post(url + "/v1/adapters/v0002/promote").json() == {"active": "v0002"}
    assert store.active() == "v0002"  # in the vault: `pllm adapters list` sees it too
    assert httpx.post(url + "/v1/adapters/rollback").json() == {"active": "v0001"}
    assert httpx.post(url + "/v1/adapters/v0042/promote").status_code == 404
    assert httpx.get(url + "/v1/privacy/report").status_code == 403  # what left the device: token only


def test_sigterm_mid_stream_ends_the_answer_and_the_server_within_seconds(tmp_path: Path) -> None:
    """uvicorn alone waits for open connections without a limit: a client that never hangs up kept a SIGTERMed
    server alive for an hour. Here the answer in flight ends at its next token and the process exits."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("pllm")), "serve", "--port", str(port)]
    server = start_server(command, port, os.environ.copy(), tmp_path / "serve.log")
    try:
        body = {"model": "pllm", "stream": True, "max_tokens": 1024, "temperature": 0,
                "messages": [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]}
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=60) as reply:
            events = reply.iter_lines()
            before = [next(events) for _ in range(8)]  # the answer is under way
            assert all(e.startswith("data: {") for e in before if e)
            server.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            after = [e for e in events if e.startswith("data: {")]
        assert server.wait(timeout=15) == 0  # a clean exit, its `finally` run
        took = time.monotonic() - signalled
        assert took < 12, f"the server took {took:.1f} s to exit"
        pieces = [json.loads(e[6:])["choices"][0] for e in after if json.loads(e[6:]).get("choices")]
        assert pieces and pieces[-1]["finish_reason"] == "length"  # ended early, by the signal
        assert len(before) + len(after) < 1024
    finally:
        stop_process(server, group=True)


def test_requests_as_apps_send_them(served: tuple[str, AdapterStore]) -> None:
    """Content as a list of parts and the `developer` role are understood; what is not supported is a 400 that
    names it, never silently ignored."""
    url, _ = served
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    parts = client.chat.completions.create(model="pllm", max_tokens=8, messages=[
        {"role": "developer", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "Say hello"}, {"type": "text", "text": "to me."}]}])
    assert parts.choices[0].message.content
    for extra, named in (({"n": 2}, "n"), ({"logprobs": True}, "logprobs"),
                         ({"functions": [{"name": "f", "parameters": {}}]}, "functions"), ({"audio": {}}, "audio")):
        reply = httpx.post(url + "/v1/chat/completions", json={"messages": HELLO, **extra})
        assert reply.status_code == 400 and named in reply.json()["error"]["message"], reply.text
    image = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    reply = httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": image}]})
    assert reply.status_code == 400 and "image_url" in reply.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_answers_parse_and_validate(served: tuple[str, AdapterStore], stream: bool) -> None:
    url, _ = served
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                               "sunny": {"type": "boolean"}},
              "required": ["city", "sunny"], "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": schema, "strict": True}}
    for question in ("What is the weather in Oslo?", "Tell me about rain in Lima.", "Is it sunny in Rome?"):
        messages = [{"role": "user", "content": question}]
        if stream:
            chunks = client.chat.completions.create(model="pllm", max_tokens=48, messages=messages,
                                                    response_format=fmt, stream=True)  # type: ignore[call-overload]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            reply = client.chat.completions.create(model="pllm", max_tokens=48, messages=messages,
                                                   response_format=fmt)  # type: ignore[call-overload]
            text = reply.choices[0].message.content or ""
        answer = json.loads(text)
        assert set(answer) == {"city", "sunny"} and isinstance(answer["sunny"], bool), text
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "$ref": "#/nowhere"}}}
    reply = httpx.post(url + "/v1/chat/completions", json={"messages": HELLO, "response_format": bad})
    assert reply.status_code == 400 and "response_format" in reply.json()["error"]["message"], reply.text


def test_embeddings_on_the_device_for_the_openai_client(served: tuple[str, AdapterStore]) -> None:
    """An app does its own retrieval with the packaged all-MiniLM-L6-v2: floats or base64, one text or many."""
    url, _ = served
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    texts = ["My boat is called Seabird.", "I sail on Sundays.", "The stock market fell today."]
    many = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    vectors = np.array([d.embedding for d in many.data])
    assert vectors.shape == (3, 384) and many.usage.prompt_tokens > 10
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # sailing is nearer the boat than the stock market
    one = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], encoding_format="base64")
    packed = one.data[0].embedding  # asked for by name, the SDK hands base64 back as it came
    assert np.allclose(np.frombuffer(base64.b64decode(packed), dtype="<f4"), vectors[0], atol=1e-5)
    for body, status in (({"input": [[1, 2, 3]]}, 400), ({"input": "x", "model": "text-embedding-3-small"}, 404),
                         ({"input": []}, 400), ({"input": "x", "dimensions": 99}, 400)):
        assert httpx.post(url + "/v1/embeddings", json=body).status_code == status, body


def test_a_wrong_method_is_405_with_allow(served: tuple[str, AdapterStore]) -> None:
    url, _ = served
    reply = httpx.get(url + "/v1/chat/completions")
    assert reply.status_code == 405 and reply.headers.get("allow") == "POST", reply.headers
    assert reply.json()["error"]["message"]


@pytest.mark.parametrize("stream", [True, False])
def test_simonws_llm_cli_talks_to_it(served: tuple[str, AdapterStore], tmp_path: Path, stream: bool) -> None:
    """A client nobody here wrote: `llm` with pllm as an extra OpenAI model, configured as its docs describe."""
    url, _ = served
    (tmp_path / "extra-openai-models.yaml").write_text(f"- model_id: pllm\n  model_name: pllm\n  api_base: {url}/v1\n")
    env = {**os.environ, "LLM_USER_PATH": str(tmp_path), "OPENAI_API_KEY": "unused"}
    command = [str(Path(sys.executable).with_name("llm")), "-m", "pllm", "-o", "max_tokens", "12",
               *([] if stream else ["--no-stream"]), "Say hello to me."]
    ran = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip(), "llm printed no answer"
