"""The T-tier forwarding to an OpenAI-compatible upstream: here the real service itself on loopback, reached through
the one OpenAI-style client; streamed answers, usage, and the upstream's refusals as clear errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from pllm.cloud.server import create_app
from pllm.config import Settings
from pllm.errors import CloudError, CloudUnavailableError
from pllm.http_serving import free_port, serve_background
from pllm.lm.foundation import UpstreamFoundation, load_foundation
from pllm.lm.runtime import GenerationConfig, Usage


@pytest.fixture(scope="module")
def upstream(foundation: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    state = tmp_path_factory.mktemp("upstream")
    app = create_app(Settings(home=state), foundation=foundation, state_dir=state)  # type: ignore[arg-type]
    key = app.state.devices.add("proxy")
    with serve_background(app) as url:
        yield url, key


def test_an_upstream_answers_streamed_with_its_usage(upstream: tuple[str, str]) -> None:
    url, key = upstream
    model = load_foundation(Settings(upstream_url=url + "/v1", upstream_model="gemma-3-270m", upstream_key=key))
    assert isinstance(model, UpstreamFoundation) and model.instruct
    usage = Usage()
    pieces = list(model.chat_stream([{"role": "user", "content": "What is the capital of France?"}],
                                    GenerationConfig(max_tokens=8), usage))
    assert len(pieces) >= 1 and "".join(pieces).strip()
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 8


def test_a_service_in_front_of_an_upstream_is_the_same_api(upstream: tuple[str, str], tmp_path: Path) -> None:
    url, key = upstream
    front = create_app(Settings(home=tmp_path, upstream_url=url, upstream_key=key), state_dir=tmp_path)
    device = front.state.devices.add("laptop")
    with serve_background(front) as front_url:
        client = openai.OpenAI(base_url=front_url + "/v1", api_key=device)
        reply = client.chat.completions.create(model="upstream", max_tokens=6,
                                               messages=[{"role": "user", "content": "Say hello."}])
    assert reply.choices[0].message.content and reply.usage is not None and reply.usage.completion_tokens > 0


def test_an_upstream_that_refuses_or_is_down_is_one_clear_error(upstream: tuple[str, str]) -> None:
    url, _ = upstream
    refused = UpstreamFoundation(url, key="pllm-wrong-key")
    with pytest.raises(CloudError, match="401"):
        list(refused.chat_stream([{"role": "user", "content": "hi"}], GenerationConfig(max_tokens=4), Usage()))
    down = UpstreamFoundation(f"http://127.0.0.1:{free_port()}", timeout=5)
    with pytest.raises(CloudUnavailableError, match="unreachable"):
        list(down.chat_stream([{"role": "user", "content": "hi"}], GenerationConfig(max_tokens=4), Usage()))
