"""The T-tier service on a real loopback socket with the embedded Gemma 3 270M: the `openai` client unchanged, device
keys, limits, and errors that are OpenAI-shaped JSON, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from pllm.cloud.devices import DeviceRegistry, RateLimiter
from pllm.cloud.server import create_app
from pllm.config import Settings
from pllm.http_serving import serve_background
from pllm.lm.foundation import EmbeddedFoundation


@pytest.fixture(scope="module")
def cloud(foundation: EmbeddedFoundation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    state = tmp_path_factory.mktemp("cloud")
    settings = Settings(home=state, cloud_max_request_bytes=20_000, cloud_rate_per_minute=1000)
    app = create_app(settings, foundation=foundation, state_dir=state)
    key = app.state.devices.add("test-device")
    with serve_background(app) as url:
        yield url, key


def test_the_openai_client_talks_to_it_unchanged(cloud: tuple[str, str]) -> None:
    url, key = cloud
    client = openai.OpenAI(base_url=url + "/v1", api_key=key)
    model = client.models.list().data[0].id
    assert model == "gemma-3-270m"  # the T-model by the name PLLM_FOUNDATION_MODEL gives it
    reply = client.chat.completions.create(model=model, max_tokens=12,
                                           messages=[{"role": "user", "content": "What is the capital of Italy?"}])
    assert "Rome" in reply.choices[0].message.content
    assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 0
    stream = client.chat.completions.create(model=model, max_tokens=12, stream=True,
                                            messages=[{"role": "user", "content": "What is the capital of Italy?"}])
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) > 2 and "Rome" in "".join(pieces)
    text = client.completions.create(model=model, prompt="One, two, three, four,", max_tokens=4).choices[0].text
    assert "five" in text.lower()


def test_augment_writes_new_items_for_each_seed(cloud: tuple[str, str]) -> None:
    url, key = cloud
    body = {"task": "short notes", "n": 2, "max_tokens": 24,
            "seeds": [{"text": "Rainy Sunday, coffee and a good book.", "label": "mood"}]}
    reply = httpx.post(url + "/v1/augment", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert reply.status_code == 200, reply.text
    items = reply.json()["items"]
    assert items and all(i["seed"] == 0 and i["label"] == "mood" and i["text"] for i in items)
    assert all(i["text"] != body["seeds"][0]["text"] for i in items)


def test_a_seeds_prompt_shows_the_other_seeds_first_and_asks_for_a_text_with_its_label() -> None:
    from pllm.cloud.augment import Seed, seed_prompt

    seeds = [Seed("A heist in Lisbon goes wrong.", "action"), Seed("Two strangers  fall in love.", "romance")]
    prompt = seed_prompt("movie descriptions", seeds, 0)
    other, own = "Label: romance\nText: Two strangers fall in love.", "Label: action\nText: A heist"
    assert prompt.index(other) < prompt.index(own)
    assert prompt.endswith("A heist in Lisbon goes wrong.\n\nLabel: action\nText:")  # a text *for* the label
    unlabelled = seed_prompt("notes", [Seed("Rain again."), Seed("Coffee first.")], 1)
    assert unlabelled.endswith("Text: Rain again.\n\nText: Coffee first.\n\nText:")


@pytest.mark.parametrize("key", [None, "pllm-not-a-registered-key", "sk-something-else"])
def test_a_missing_or_wrong_key_gets_401(cloud: tuple[str, str], key: str | None) -> None:
    url, _ = cloud
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    reply = httpx.post(url + "/v1/chat/completions", headers=headers,
                       json={"messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key=key or "x").models.list()


def test_an_oversized_request_gets_413_and_a_bad_one_400(cloud: tuple[str, str]) -> None:
    url, key = cloud
    auth = {"Authorization": f"Bearer {key}"}
    big = httpx.post(url + "/v1/chat/completions", headers=auth,
                     json={"messages": [{"role": "user", "content": "x" * 30_000}]})
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    bad = httpx.post(url + "/v1/chat/completions", headers=auth,
                     json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1})
    assert bad.status_code == 400 and "max_tokens" in bad.json()["error"]["message"]
    empty = httpx.post(url + "/v1/chat/completions", headers=auth, json={"messages": []})
    assert empty.status_code == 400
    junk = httpx.post(url + "/v1/chat/completions", headers={**auth, "Content-Type": "application/json"},
                      content=b"{not json")
    assert junk.status_code == 400 and "error" in junk.json()
    hi = [{"role": "user", "content": "hi"}]
    for body, named in (({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
                        ({"messages": [*hi, {"role": "tool", "tool_call_id": "c", "content": "1"}]}, "tool")):
        refused = httpx.post(url + "/v1/chat/completions", headers=auth, json={"messages": hi, **body})
        assert refused.status_code == 400 and named in refused.json()["error"]["message"], refused.text  # T-tier


def test_a_prompt_longer_than_the_context_is_a_413_not_a_500(cloud: tuple[str, str]) -> None:
    url, key = cloud
    words = " ".join(["tomato"] * 2500)  # ~2,500 tokens in a 2,048-token context, under the byte limit
    reply = httpx.post(url + "/v1/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"prompt": words, "max_tokens": 4}, timeout=60)
    assert reply.status_code == 413, reply.text
    assert "context" in reply.json()["error"]["message"]


def test_each_device_is_rate_limited(foundation: EmbeddedFoundation, tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path, cloud_rate_per_minute=2), foundation=foundation, state_dir=tmp_path)
    first, second = app.state.devices.add("one"), app.state.devices.add("two")
    with serve_background(app) as url:
        def models(key: str) -> httpx.Response:
            return httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"})

        assert [models(first).status_code for _ in range(3)] == [200, 200, 429]
        limited = models(first)
        assert limited.json()["error"]["type"] == "rate_limit_error" and int(limited.headers["Retry-After"]) >= 1
        assert models(second).status_code == 200  # another device has its own budget


def test_keys_are_stored_hashed_and_can_be_revoked(tmp_path: Path) -> None:
    registry = DeviceRegistry(tmp_path / "cloud.db")
    key = registry.add("laptop")
    assert registry.verify(key) == "laptop"
    assert key.encode() not in (tmp_path / "cloud.db").read_bytes()
    new_key = registry.add("laptop")  # a new key replaces the old one
    assert registry.verify(key) is None and registry.verify(new_key) == "laptop"
    assert registry.revoke("laptop") and registry.verify(new_key) is None


def test_the_rate_limit_window_slides() -> None:
    limiter = RateLimiter(per_minute=2)
    assert limiter.allow("d", now=0.0) == 0 and limiter.allow("d", now=1.0) == 0
    assert limiter.allow("d", now=2.0) == pytest.approx(58.0)
    assert limiter.allow("d", now=60.5) == 0
