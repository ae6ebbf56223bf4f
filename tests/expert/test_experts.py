"""An expert end to end on the real packaged models: trained with the shared trainer, examined against the bare
base on its held-out exam on llama.cpp, registered by the rule, served by the cloud service as an adapter on the one
loaded base (the `openai` client unchanged), listed and asked from the command line."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import httpx
import openai
import pytest

from pllm.cloud.server import create_app
from pllm.config import get_settings
from pllm.expert.domains import PACKAGED, load_domain
from pllm.expert.registry import ExpertRegistry
from pllm.expert.train import ExpertResult
from pllm.http_serving import serve_background


@pytest.mark.slow
def test_an_expert_is_examined_and_served_as_an_adapter_on_the_one_base(
        cooking_expert: ExpertResult, foundation: object,
        pllm: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    settings = get_settings()
    domain = load_domain("cooking")
    result = cooking_expert
    card = result.card
    assert card.n_eval == len(result.base_per_question) == len(domain.exam) and card.train_pairs == 16
    assert result.expert_per_question != result.base_per_question  # the exported adapter changes llama.cpp's scores
    low, high = card.gain_interval
    assert low <= card.domain_score - card.base_score <= high
    assert result.reason.startswith("better than the bare base" if low > 0 else "not registered: not better")
    ExpertRegistry(settings.paths.experts).register(card, result.adapter, [])

    app = create_app(settings, foundation=foundation)  # type: ignore[arg-type]
    key = app.state.devices.add("test-device")
    with serve_background(app) as url:
        catalog = httpx.get(f"{url}/v1/experts", headers={"Authorization": f"Bearer {key}"}).json()["data"]
        assert [(e["name"], e["n_eval"]) for e in catalog] == [("cooking", 30)]
        client = openai.OpenAI(base_url=f"{url}/v1/experts/cooking", api_key=key, max_retries=0)
        question = [{"role": "user", "content": "How do I keep pasta from sticking?"}]
        reply = client.chat.completions.create(model="cooking", max_tokens=24, messages=question)  # type: ignore
        assert reply.choices[0].message.content and reply.model == "expert:cooking"
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
            model="cooking", max_tokens=24, messages=question, stream=True) if chunk.choices)  # type: ignore
        assert streamed == reply.choices[0].message.content  # greedy: the same adapter, the same answer
        missing = httpx.post(f"{url}/v1/experts/knitting/chat/completions", json={"messages": question},
                             headers={"Authorization": f"Bearer {key}"})
        assert missing.status_code == 404 and "no expert 'knitting'" in missing.json()["error"]["message"]

    listed = pllm("expert", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert '"name": "cooking"' in listed.stdout and '"base_score"' in listed.stdout
    asked = pllm("expert", "ask", "cooking", "How long should rice simmer?", "--max-tokens", "16")
    assert asked.returncode == 0 and asked.stdout.strip(), asked.stderr
    unknown = pllm("expert", "ask", "knitting", "How do I cast on?")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: no expert 'knitting'")


def test_expert_train_refuses_a_corpus_that_is_the_exam(pllm: Callable[..., subprocess.CompletedProcess[str]]
                                                        ) -> None:
    run = pllm("expert", "train", "cooking", "--corpus", str(PACKAGED / "cooking" / "exam.jsonl"))
    assert run.returncode == 2, run.stderr
    assert "30 of 30" not in run.stderr and "exam leak 30" in run.stderr
    assert run.stderr.strip().splitlines()[-1] == "error: no pair survived the filters: nothing to train on"
