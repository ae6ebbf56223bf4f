"""The default T-model, Qwen2.5 1.5B Instruct, end to end: joined from its chunk packages, served on loopback by the
real service, asked by the real `pllm` script through the privacy gate, its answer restored on the device; and
augmentation as one grammar-constrained JSON list per seed."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pllm.cloud.augment import AugmentRequest, Seed, augment
from pllm.cloud.server import create_app
from pllm.config import Settings
from pllm.http_serving import serve_background
from pllm.lm.foundation import EmbeddedFoundation
from pllm.lm.models import QWEN, resolve_foundation_model

Run = Callable[..., subprocess.CompletedProcess[str]]
PASS = {"PLLM_PASSPHRASE": "s3cret"}


@pytest.fixture(scope="module")
def qwen() -> Iterator[EmbeddedFoundation]:
    model = EmbeddedFoundation.from_settings(Settings(foundation_model="qwen2.5-1.5b", n_ctx=2048))
    yield model
    model.runtime.close()


def test_the_default_t_model_is_qwen_joined_and_pinned() -> None:
    assert Settings.model_fields["foundation_model"].default == QWEN.name
    model = resolve_foundation_model(Settings(foundation_model="qwen2.5-1.5b"))
    assert model.path.stat().st_size == QWEN.size and model.name == "qwen2.5-1.5b"
    stamp = model.path.with_name(model.path.name + ".sha256").read_text()
    assert stamp.startswith(QWEN.sha256)


def test_ask_cloud_reaches_qwen_redacted_and_the_answer_comes_back_restored(
        qwen: EmbeddedFoundation, pllm: Run, pllm_home: Path, tmp_path: Path) -> None:
    assert qwen.instruct
    recorded: list[tuple[str, bytes]] = []
    app = create_app(Settings(home=tmp_path / "cloud"), foundation=qwen, state_dir=tmp_path / "cloud",  # type: ignore[arg-type]
                     record=recorded)
    key = app.state.devices.add("laptop")
    assert pllm("init", "--name", "Mara Lindqvist", env=PASS).returncode == 0
    note = tmp_path / "note.txt"
    note.write_text("My sister is called Ingrid Halvorsen. She lives in Bergen.")
    assert pllm("ingest", str(note), env=PASS).returncode == 0
    with serve_background(app) as url:
        env = {**PASS, "PLLM_CLOUD_URL": url, "PLLM_CLOUD_KEY": key, "PLLM_CLOUD_TIMEOUT": "300"}
        asked = pllm("ask", "--cloud", "--json", "-n", "40",
                     "Write a one-sentence birthday greeting to my sister Ingrid Halvorsen. Use her name.", env=env,
                     timeout=600)
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["tier"] == "cloud"
    bodies = [body.decode() for path, body in recorded if path.startswith("/v1/")]
    assert bodies and all("Ingrid" not in b and "Halvorsen" not in b for b in bodies)
    assert "[PERSON_" in bodies[0]
    assert "Ingrid" in answer["text"] and "[PERSON_" not in answer["text"]  # put back on the device


def test_augmentation_asks_once_per_seed_for_a_list_that_parses(qwen: EmbeddedFoundation) -> None:
    seeds = [Seed("Baked rye bread again; the crust cracked nicely this time.", "baking"),
             Seed("Ran 8 km along the fjord before work, legs heavy but happy.", "running")]
    result = augment(qwen, AugmentRequest(task="short diary notes", seeds=seeds, n=2, max_tokens=40, seed=1))
    assert result.requests == 2 and result.unparsed == 0  # one request per seed, every answer a JSON list
    assert {item.seed for item in result.items} == {0, 1} and all(item.text for item in result.items)
    assert all(item.label == seeds[item.seed].label for item in result.items)
    assert result.usage.completion_tokens > 0 and result.seconds > 0


def test_distillation_asks_qwen_once_per_topic_for_pairs_that_parse(qwen: EmbeddedFoundation) -> None:
    from dataclasses import replace

    from pllm.expert.distill import DistillConfig, DistillReport, write_pairs
    from pllm.expert.domains import load_domain

    domain = load_domain("cooking")
    domain = replace(domain, topics=domain.topics[:1])
    report = DistillReport()
    pairs = write_pairs(qwen, domain, DistillConfig(per_topic=2, max_tokens=60), report)
    assert report.requests == 1 and len(pairs) == 2  # one request for the topic's two pairs, both parsed
    assert all(p.question.strip() and p.answer.strip() for p in pairs)
