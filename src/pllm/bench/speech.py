"""`pllm eval --task speech`: the packaged Whisper base on sentences rendered by espeak-ng (no microphone here).

Word error rate over `data/speech/sentences.txt` (substitutions + deletions + insertions over the reference words,
after lower-casing and dropping punctuation), with a 95% bootstrap interval over sentences, and the real-time factor
(seconds of transcription per second of audio). Synthetic speech is harder than a person's: the figure is a floor.

    result = run_speech(settings, sentences_file)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pllm.bench.lamp import FormatError
from pllm.config import Settings
from pllm.errors import UsageError
from pllm.extras import extra
from pllm.reports import Report
from pllm.stats import Bootstrap

DEFAULT_SENTENCES = Path(__file__).resolve().parents[3] / "data" / "speech" / "sentences.txt"
VOICE = ("en-us", 150)  # espeak-ng's voice and words per minute


def normalise(text: str) -> str:
    """Lower case, words only: WER counts what was said, not how it was punctuated."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).replace("'", "").split())


def load_sentences(path: Path) -> list[str]:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: cannot read it ({exc})") from None
    sentences = [line for line in lines if line]
    if not sentences:
        raise FormatError(f"{path}: no sentences (one a line)")
    return sentences


def render(text: str, path: Path) -> Path:
    """`text` spoken by espeak-ng into a wav file."""
    if shutil.which("espeak-ng") is None:
        raise UsageError("pllm eval --task speech needs Debian's espeak-ng to render speech: apt-get install espeak-ng "
                         "(`make setup` does, as root)")
    subprocess.run(["espeak-ng", "-v", VOICE[0], "-s", str(VOICE[1]), "-w", str(path), "--", text], check=True,
                   capture_output=True)
    return path


def run_speech(settings: Settings, sentences_file: Path, *, tick: Callable[[], None] = lambda: None
               ) -> dict[str, Any]:
    from pllm.lm.speech import Transcriber

    jiwer = extra("jiwer", "bench")
    sentences = load_sentences(sentences_file)
    started = time.perf_counter()
    transcriber = Transcriber.from_settings(settings)
    load_seconds = time.perf_counter() - started
    rows = []
    with tempfile.TemporaryDirectory(prefix="pllm-speech-") as folder:
        for n, sentence in enumerate(sentences):
            transcript = transcriber.transcribe(render(sentence, Path(folder) / f"{n}.wav"))
            reference, heard = normalise(sentence), normalise(transcript.text)
            measures = jiwer.process_words(reference, heard)
            rows.append({"said": sentence, "heard": transcript.text, "words": len(reference.split()),
                         "errors": measures.substitutions + measures.deletions + measures.insertions,
                         "audio_seconds": round(transcript.duration, 3), "seconds": round(transcript.seconds, 3)})
            tick()
    errors = np.array([r["errors"] for r in rows], dtype=float)
    words = np.array([r["words"] for r in rows], dtype=float)
    audio, spent = sum(r["audio_seconds"] for r in rows), sum(r["seconds"] for r in rows)
    low, high = Bootstrap(len(rows), seed=settings.seed).interval(lambda idx: float(errors[idx].sum()
                                                                                   / words[idx].sum()))
    return {"sentences": len(rows), "words": int(words.sum()), "wer": round(float(errors.sum() / words.sum()), 4),
            "wer_interval": [round(low, 4), round(high, 4)],
            "exact": sum(1 for r in rows if r["errors"] == 0), "audio_seconds": round(audio, 2),
            "transcribe_seconds": round(spent, 2), "real_time_factor": round(spent / audio, 3),
            "load_seconds": round(load_seconds, 2), "threads": settings.threads,
            "voice": f"espeak-ng {VOICE[0]}, {VOICE[1]} words/min", "model": "whisper-base (int8, CTranslate2)",
            "rows": rows}


def write_speech_report(result: dict[str, Any], folder: Path, *, command: str, machine: str) -> Path:
    report = Report(f"Speech to text: Whisper base on {result['sentences']} rendered sentences", command=command,
                    machine=f"Machine: {machine}; {result['threads']} threads.")
    low, high = result["wer_interval"]
    report.add(f"Speech: {result['voice']} (synthetic: harder than a person's voice, so this is a floor). Words are "
               "compared as written, after lower-casing and dropping punctuation: \"7.30\" for \"seven thirty\" and an "
               "American spelling count as errors.")
    report.add("| model | sentences (words) | WER [95%] | exact | real-time factor | load s |",
               "|---|---:|---|---:|---:|---:|",
               f"| {result['model']} | {result['sentences']} ({result['words']}) | {result['wer']:.3f} "
               f"[{low:.3f}, {high:.3f}] | {result['exact']} | {result['real_time_factor']:.2f} | "
               f"{result['load_seconds']} |")
    rows = ["| said | heard | errors / words |", "|---|---|---:|"]
    rows += [f"| {r['said']} | {r['heard'].replace('|', '/')} | {r['errors']} / {r['words']} |" for r in result["rows"]]
    report.add(*rows)

    def draw(ax: Any) -> None:
        rates = [r["errors"] / r["words"] for r in result["rows"]]
        ax.bar(range(1, len(rates) + 1), rates, color="#2f6fdf")
        ax.axhline(result["wer"], color="#d93025", linestyle="--", label=f"WER {result['wer']:.3f}")
        ax.set_xlabel("sentence")
        ax.set_ylabel("word error rate")
        ax.legend()

    report.plot("wer.png", draw)
    return report.write(folder, result)
