"""Speech to text on the device: the packaged Whisper base (CTranslate2, int8) through faster-whisper.

The model comes from the `voice` extra's chunk packages (joined and checked by `lm.models.resolve_speech_model`);
the audio never leaves the device and is never stored: only its transcript is.

    transcriber = Transcriber.from_settings(settings)
    transcript = transcriber.transcribe(Path("memo.m4a"))
    transcript.text, transcript.duration, transcript.segments
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pllm.errors import AudioError
from pllm.extras import extra

if TYPE_CHECKING:
    from pllm.config import Settings

# What ffmpeg (PyAV, faster-whisper's decoder) reads here; a voice memo app writes one of these.
AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".ogg", ".oga", ".opus", ".flac", ".webm", ".mp4", ".aac")
SAMPLE_RATE = 16_000  # Whisper's input rate: faster-whisper resamples everything to it


@dataclass(frozen=True)
class Segment:
    """A stretch of speech: seconds from the start, and what was said."""

    id: int
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    """What was said in one recording, with its length and the seconds transcription took."""

    text: str
    language: str
    duration: float
    segments: list[Segment] = field(default_factory=list)
    seconds: float = 0.0

    def verbose(self) -> dict[str, Any]:
        """OpenAI's `verbose_json` shape."""
        return {"task": "transcribe", "language": self.language, "duration": round(self.duration, 3),
                "text": self.text, "segments": [{"id": s.id, "start": round(s.start, 3), "end": round(s.end, 3),
                                                 "text": s.text} for s in self.segments]}


class Transcriber:
    """One loaded Whisper model; `transcribe` is safe to call from several threads (one at a time)."""

    def __init__(self, folder: Path, *, threads: int, language: str = "en", max_seconds: float = 900.0) -> None:
        whisper = extra("faster_whisper", "voice")
        self.folder = folder
        self.language = language
        self.max_seconds = max_seconds
        self._model = whisper.WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=threads)
        self._decode = whisper.decode_audio
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Transcriber:
        from pllm.lm.models import resolve_speech_model

        return cls(resolve_speech_model(settings), threads=settings.threads, language=settings.speech_language,
                   max_seconds=settings.audio_max_seconds)

    def transcribe(self, audio: Path | bytes, *, name: str = "", language: str | None = None,
                   prompt: str | None = None) -> Transcript:
        """The words in `audio` (a file, or its bytes as uploaded); AudioError when it is no sound ffmpeg reads, or
        longer than the limit. `language` '' detects it; `prompt` is text the speech continues (names, spellings)."""
        label = name or (audio.name if isinstance(audio, Path) else "the upload")
        samples = self._samples(audio, label)
        duration = len(samples) / SAMPLE_RATE
        if duration > self.max_seconds:
            raise AudioError(f"{label} is {duration:.0f} s long; the limit is {self.max_seconds:.0f} s "
                             "(PLLM_AUDIO_MAX_SECONDS)")
        lang = self.language if language is None else language
        started = time.perf_counter()
        with self._lock:
            pieces, info = self._model.transcribe(samples, language=lang or None, beam_size=5,
                                                  initial_prompt=prompt or None, condition_on_previous_text=False)
            segments = [Segment(i, float(p.start), float(p.end), p.text.strip()) for i, p in enumerate(pieces)]
        text = " ".join(s.text for s in segments if s.text).strip()
        return Transcript(text=text, language=str(info.language), duration=duration, segments=segments,
                          seconds=time.perf_counter() - started)

    def _samples(self, audio: Path | bytes, label: str) -> Any:
        if isinstance(audio, Path) and not audio.is_file():
            raise AudioError(f"no audio file at {audio}")
        if not (audio.stat().st_size if isinstance(audio, Path) else len(audio)):
            raise AudioError(f"{label} is empty")
        source: Any = str(audio) if isinstance(audio, Path) else io.BytesIO(audio)
        declared = container_seconds(source)  # before decoding: hours of compressed audio are gigabytes decoded
        if declared is not None and declared > self.max_seconds:
            raise AudioError(f"{label} is {declared:.0f} s long; the limit is {self.max_seconds:.0f} s "
                             "(PLLM_AUDIO_MAX_SECONDS)")
        try:
            return self._decode(source, sampling_rate=SAMPLE_RATE)
        except Exception as exc:  # PyAV raises its own error types for each way a file can be wrong
            raise AudioError(f"{label} is not audio pllm can read ({type(exc).__name__}): give a wav, mp3, m4a, ogg, "
                             "flac or webm recording") from None


def container_seconds(source: Any) -> float | None:
    """How long a recording says it is (its container's duration), without decoding it; None when it does not say
    or cannot be opened. A file object is left at its start."""
    try:
        import av

        with av.open(source) as container:
            return container.duration / 1e6 if container.duration else None
    except Exception:  # not a container PyAV knows: decoding will say so in its own words
        return None
    finally:
        if hasattr(source, "seek"):
            source.seek(0)


def recorded_at(path: Path) -> float:
    """When a recording was made: its container's creation_time tag (phones write one), else the file's time."""
    try:
        import av

        with av.open(str(path)) as container:
            tag = container.metadata.get("creation_time") or container.metadata.get("date")
        if tag:
            return datetime.fromisoformat(str(tag).replace("Z", "+00:00")).timestamp()
    except Exception:  # no tag, an odd date, or no PyAV: the file's own time is the next best
        pass
    return path.stat().st_mtime
