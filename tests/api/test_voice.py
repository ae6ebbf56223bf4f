"""POST /v1/audio/transcriptions on `pllm serve`, spoken to by the `openai` SDK as an app would (the real Whisper
base, the real vault and model), and a spoken chat request (`metadata.modality`) logged as spoken and answered short."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from openai import BadRequestError, NotFoundError, OpenAI

from pllm.api.app import create_app
from pllm.config import Settings
from pllm.http_serving import serve_background
from pllm.personal.assistant import SPOKEN_MAX_TOKENS
from pllm.personal.vault import Vault

PASSPHRASE = "s3cret"
NOTE = "My boat is called Seabird and I sail it on Sundays."


@pytest.fixture
def url(vault: Vault) -> Iterator[str]:
    with serve_background(create_app(Settings(api_max_audio_bytes=400_000), vault)) as where:
        yield where


def test_the_openai_sdk_transcribes_on_the_device(url: str, speech: Callable[..., Path]) -> None:
    client = OpenAI(base_url=url + "/v1", api_key="unused-on-loopback", max_retries=0)
    recording = speech("Remind me to call my mother on Sunday.")
    with recording.open("rb") as f:
        plain = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert "call my mother" in plain.text.lower()
    with recording.open("rb") as f:
        verbose = client.audio.transcriptions.create(model="whisper-base", file=f, response_format="verbose_json",
                                                     language="en")
    assert verbose.text == plain.text and verbose.language == "en" and 2 < verbose.duration < 6
    assert verbose.segments and verbose.segments[0].text
    with recording.open("rb") as f:
        text = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="text")
    assert str(text).strip() == plain.text


def test_a_spoken_question_is_answered_from_the_vault(url: str, speech: Callable[..., Path], vault: Vault) -> None:
    """What an app does with a recording: transcribe it, then ask with what was heard, marked as spoken."""
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    # "sailing boat": espeak-ng's "my boat" alone is heard as "my vote" on the Xeon with AMX
    with speech("What is my sailing boat called?").open("rb") as f:
        heard = client.audio.transcriptions.create(model="whisper-1", file=f).text
    assert "boat" in heard.lower()
    answer = client.chat.completions.create(model="pllm", max_tokens=64, metadata={"modality": "voice"},
                                            messages=[{"role": "user", "content": heard}])
    assert "Seabird" in (answer.choices[0].message.content or "")
    assert [tuple(r) for r in vault.conn.execute("SELECT prompt, modality FROM interactions")] == [(heard, "voice")]


def test_bad_uploads_are_4xx_in_openais_shape(url: str, speech: Callable[..., Path]) -> None:
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    recording = speech("Hello there.")
    with pytest.raises(BadRequestError, match="not audio pllm can read"):
        client.audio.transcriptions.create(model="whisper-1", file=("notes.txt", b"plain text", "text/plain"))
    with pytest.raises(NotFoundError, match="no speech model"), recording.open("rb") as f:
        client.audio.transcriptions.create(model="whisper-large-v3", file=f)
    with pytest.raises(BadRequestError, match="response_format"), recording.open("rb") as f:
        client.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt")
    with recording.open("rb") as f:
        extra = httpx.post(url + "/v1/audio/transcriptions", files={"file": f}, data={"chunking_strategy": "auto"})
    assert extra.status_code == 400 and "chunking_strategy" in extra.json()["error"]["message"]
    missing = httpx.post(url + "/v1/audio/transcriptions", data={"model": "whisper-1"})
    assert missing.status_code == 400 and "file" in missing.json()["error"]["message"]
    big = httpx.post(url + "/v1/audio/transcriptions", files={"file": ("long.wav", b"\0" * 500_000)})
    assert big.status_code == 413  # the audio route's own limit (PLLM_API_MAX_AUDIO_BYTES)


def test_a_spoken_chat_request_is_logged_as_spoken_and_answered_short(url: str, vault: Vault) -> None:
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    spoken = client.chat.completions.create(model="pllm", max_tokens=400, metadata={"modality": "voice"},
                                            messages=[{"role": "user", "content": "Tell me about sailing."}])
    assert spoken.usage is not None and spoken.usage.completion_tokens <= SPOKEN_MAX_TOKENS
    client.chat.completions.create(model="pllm", max_tokens=8, messages=[{"role": "user", "content": "Hi"}])
    modalities = [row[0] for row in vault.conn.execute("SELECT modality FROM interactions ORDER BY id")]
    assert modalities == ["voice", "text"]
    with pytest.raises(BadRequestError, match="modality"):
        client.chat.completions.create(model="pllm", max_tokens=8, metadata={"modality": "telepathy"},
                                       messages=[{"role": "user", "content": "Hi"}])


def test_a_spoken_no_i_meant_through_the_api_is_feedback_on_the_answer_before(url: str, vault: Vault) -> None:
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    asked = {"role": "user", "content": "What time is the bus?"}
    first = client.chat.completions.create(model="pllm", max_tokens=24, metadata={"modality": "voice"},
                                           messages=[asked])  # type: ignore[list-item]
    shown = first.choices[0].message.content or ""
    client.chat.completions.create(model="pllm", max_tokens=24, metadata={"modality": "voice"}, messages=[
        asked, {"role": "assistant", "content": shown},  # type: ignore[list-item]
        {"role": "user", "content": "No, I meant the train to Oslo."}])
    rows = vault.conn.execute("SELECT i.prompt, f.kind, f.value FROM feedback f JOIN interactions i "
                              "ON i.id = f.interaction_id").fetchall()
    assert [(p, k) for p, k, _ in rows] == [("What time is the bus?", "down")] and "train to Oslo" in rows[0][2]


def test_a_recording_over_a_megabyte_stays_in_memory(vault: Vault, speech: Callable[..., Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Starlette spools an upload part over 1 MB to a temporary file; the server keeps recordings in memory."""
    import tempfile

    rolled: list[int] = []
    original = tempfile.SpooledTemporaryFile.rollover
    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover",
                        lambda self: rolled.append(1) or original(self))  # type: ignore[func-returns-value]
    recording = speech("Please book a taxi to the airport.", silence_s=30.0)
    assert recording.stat().st_size > 1 << 20
    with serve_background(create_app(Settings(), vault)) as where, recording.open("rb") as f:
        heard = httpx.post(where + "/v1/audio/transcriptions", files={"file": f}, timeout=180)
    assert heard.status_code == 200 and "taxi" in heard.json()["text"].lower()
    assert rolled == []
