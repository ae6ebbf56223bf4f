"""`pllm eval --task speech`: the real Whisper base on sentences espeak-ng renders, scored by jiwer."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pllm.bench.lamp import FormatError
from pllm.bench.speech import load_sentences, normalise, run_speech
from pllm.config import Settings

Run = Callable[..., subprocess.CompletedProcess[str]]


def test_word_error_rate_is_measured_with_its_interval(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("no espeak-ng on PATH (`make setup` installs Debian's where it runs as root)")
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("Remind me to call my mother on Sunday.\n\nPlease read me the last note I wrote.\n"
                         "Zorblax quintuple vexillary.\n")
    result = run_speech(Settings(home=tmp_path, threads=1), sentences)
    assert result["sentences"] == 3 and result["words"] == 8 + 8 + 3
    assert result["rows"][0]["said"] == "Remind me to call my mother on Sunday."
    errors = sum(r["errors"] for r in result["rows"])
    assert result["wer"] == pytest.approx(errors / result["words"], abs=1e-4)
    assert result["rows"][2]["errors"] >= 1  # made-up words are not heard as written
    low, high = result["wer_interval"]
    assert low <= result["wer"] <= high and result["real_time_factor"] > 0


def test_normalising_keeps_words_and_drops_punctuation() -> None:
    assert normalise("My sister's dog, Biscuit!") == "my sisters dog biscuit"


def test_a_bad_sentences_file_is_one_line(tmp_path: Path, pllm: Run) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(FormatError, match="no sentences"):
        load_sentences(empty)
    proc = pllm("eval", "--task", "speech", "--data", str(tmp_path / "missing.txt"), "--json")
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    assert not proc.stdout.strip()
