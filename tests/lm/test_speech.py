"""Speech to text on the device: the real packaged Whisper base (joined from its chunk packages, sha256 checked) on
speech rendered by espeak-ng, and one clear error for everything that is not a recording it can read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pllm.config import Settings
from pllm.errors import AudioError
from pllm.lm.models import WHISPER, resolve_speech_model
from pllm.lm.speech import Transcriber


@pytest.fixture(scope="module")
def transcriber(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Transcriber]:
    yield Transcriber.from_settings(Settings(home=tmp_path_factory.mktemp("speech-home"), threads=1))


def words(text: str) -> list[str]:
    return "".join(c for c in text.lower() if c.isalnum() or c.isspace()).split()  # "sister's": "sisters"


def test_the_packaged_model_is_joined_once_and_checked(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path)
    folder = resolve_speech_model(settings)
    assert (folder / "model.bin").stat().st_size == WHISPER.size
    assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in folder.iterdir()}
    stamp = (folder / "model.bin.sha256").read_text()
    assert stamp.startswith(WHISPER.sha256)
    assert resolve_speech_model(settings) == folder  # the second time is a stamp check, not a rejoin


def test_spoken_words_come_back_as_text_with_segments(transcriber: Transcriber,
                                                      speech: Callable[..., Path]) -> None:
    said = "My sister's dog is called Biscuit."
    transcript = transcriber.transcribe(speech(said, silence_s=1.0))
    heard = words(transcript.text)
    assert {"sisters", "dog", "called", "biscuit"} <= set(heard), transcript.text
    assert transcript.language == "en" and 2.0 < transcript.duration < 6.0
    verbose = transcript.verbose()
    assert verbose["segments"] and verbose["segments"][0]["start"] == 0.0
    assert verbose["segments"][-1]["end"] <= transcript.duration + 0.5


def test_bytes_as_uploaded_are_heard_the_same(transcriber: Transcriber, speech: Callable[..., Path]) -> None:
    path = speech("What is the weather like tomorrow?")
    assert transcriber.transcribe(path.read_bytes()).text == transcriber.transcribe(path).text


def test_what_is_not_a_readable_recording_is_one_clear_error(transcriber: Transcriber, tmp_path: Path,
                                                             speech: Callable[..., Path]) -> None:
    with pytest.raises(AudioError, match="not audio pllm can read"):
        transcriber.transcribe(b"this is text, not a recording")
    with pytest.raises(AudioError, match="is empty"):
        transcriber.transcribe(b"")
    with pytest.raises(AudioError, match="no audio file"):
        transcriber.transcribe(tmp_path / "missing.wav")
    short = Transcriber(transcriber.folder, threads=1, max_seconds=1.0)
    with pytest.raises(AudioError, match="the limit is 1 s"):
        short.transcribe(speech("This sentence takes longer than one second to say."))


def test_a_recording_is_dated_by_its_creation_time_tag(tmp_path: Path) -> None:
    """Phones tag a memo with when it was recorded; a file without a tag is dated by its modification time."""
    import datetime

    import av
    import numpy as np

    from pllm.lm.speech import recorded_at

    path = tmp_path / "memo.m4a"
    with av.open(str(path), "w", format="ipod") as out:
        out.metadata["creation_time"] = "2025-03-04T10:00:00.000000Z"
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    assert recorded_at(path) == datetime.datetime(2025, 3, 4, 10, tzinfo=datetime.UTC).timestamp()
    plain = tmp_path / "plain.wav"
    plain.write_bytes(b"RIFF")
    assert recorded_at(plain) == plain.stat().st_mtime
