"""Voice in, through the real `pllm` script: a voice memo ingested as the user's own words (the audio not kept), a
spoken question answered from the vault, `/voice` in the chat, the modality in the profile, a spoken correction as
feedback, and one clear line for a file that is not a recording."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pllm.lm.runtime import GenerationConfig, Runtime
from pllm.personal.assistant import SPOKEN_MAX_TOKENS, Assistant
from pllm.personal.profile import build_profile
from pllm.personal.vault import create_vault

Run = Callable[..., subprocess.CompletedProcess[str]]
PASS = {"PLLM_PASSPHRASE": "s3cret"}
MEMO = "My sister's dog is called Biscuit. She is a golden retriever."


@pytest.fixture
def home(pllm: Run, pllm_home: Path) -> Path:
    proc = pllm("init", "--name", "Mara", env=PASS)
    assert proc.returncode == 0, proc.stderr
    return pllm_home


def test_a_voice_memo_is_remembered_and_a_spoken_question_answered_from_it(
        pllm: Run, home: Path, tmp_path: Path, speech: Callable[..., Path], files_holding: Callable[..., list[Path]]
) -> None:
    memos = tmp_path / "memos"
    memos.mkdir()
    memo = speech(MEMO)
    recording = memo.rename(memos / "walk.wav")
    (memos / "todo.txt").write_text("Buy a new sail.")
    texts_only = pllm("ingest", str(memos), env=PASS)  # a folder's recordings only when asked for
    assert texts_only.returncode == 0 and "walk.wav" not in texts_only.stdout, texts_only.stdout
    ingested = pllm("ingest", "--voice-memos", str(memos), env=PASS)
    assert ingested.returncode == 0, ingested.stderr
    exported = json.loads(pllm("profile", "export", env=PASS).stdout)
    voice = [d for d in exported["documents"] if d["kind"] == "voice"]
    # the name as heard: Whisper writes "biscuit" in lower case on some CPUs (the Xeon with AMX), "Biscuit" on others
    assert len(voice) == 1 and "biscuit" in voice[0]["content"].lower()
    assert abs(voice[0]["created_at"] - recording.stat().st_mtime) < 1  # dated when it was recorded
    assert files_holding(recording.read_bytes()[-4096:], home) == []  # the audio itself is not kept

    asked = pllm("ask", "--audio", str(speech("What is my sister's dog called?")), "--json", env=PASS)
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert "dog" in answer["heard"].lower() and "biscuit" in answer["text"].lower()
    assert answer["tokens"] <= SPOKEN_MAX_TOKENS

    profile = json.loads(pllm("profile", "show", "--json", env=PASS).stdout)
    assert profile["voice"]["spoken"] == 1 and profile["voice"]["typed"] == 0 and profile["voice"]["memos"] == 1
    shown = pllm("profile", "show", env=PASS)
    assert "1 spoken, 0 typed" in shown.stdout


def test_chat_takes_a_recording(pllm: Run, home: Path, speech: Callable[..., Path]) -> None:
    question = speech("Tell me the capital of Germany.")
    chatted = pllm("chat", "-n", "24", env=PASS, stdin=f"/voice {question}\nAnd of Spain?\n")
    assert chatted.returncode == 0, chatted.stderr
    assert "heard" in chatted.stderr and "germany" in chatted.stderr.lower()  # what was heard is shown
    assert "Berlin" in chatted.stdout.splitlines()[0]
    exported = json.loads(pllm("profile", "export", env=PASS).stdout)
    assert [i["modality"] for i in exported["interactions"]] == ["voice", "text"]


def test_what_is_not_a_recording_is_one_line(pllm: Run, home: Path, tmp_path: Path,
                                             speech: Callable[..., Path]) -> None:
    fake = tmp_path / "question.wav"
    fake.write_text("not a recording")
    for args in (["ask", "--audio", str(fake)], ["ask", "--audio", str(tmp_path / "none.wav")],
                 ["ask", "Hi", "--audio", str(speech("Hello"))], ["ingest", str(fake)]):
        proc = pllm(*args, env=PASS)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_a_spoken_correction_is_feedback_on_the_answer_before(runtime: Runtime, pllm_home: Path) -> None:
    vault = create_vault(pllm_home / "vault.db", "pw", name="Mara")
    assistant = Assistant(runtime, vault=vault)
    config = GenerationConfig(max_tokens=300)
    first = assistant.answer("What time is the bus?", config, modality="voice")
    assert first.tokens <= SPOKEN_MAX_TOKENS  # a spoken request is answered short
    wrong = assistant.last_interaction
    assistant.answer("No, I meant the train to Oslo.", config, modality="voice")
    feedback = vault.feedback()
    assert [(f.interaction_id, f.kind) for f in feedback] == [(wrong, "down")]
    assert "train to Oslo" in (feedback[0].value or "")
    assistant.answer("No, I meant it.", config)  # typed: taken as it is, no feedback
    assert len(vault.feedback()) == 1
    assert build_profile(vault).voice["spoken"] == 2
    vault.close()
