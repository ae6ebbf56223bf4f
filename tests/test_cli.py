"""The command line: in-process through Typer's CliRunner, and end to end through the installed `pllm` script."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pllm import __version__
from pllm.cli import app
from pllm.config import get_settings

runner = CliRunner()
Run = Callable[..., subprocess.CompletedProcess[str]]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"pllm {__version__}"


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("ask", "chat", "bench", "doctor"):
        assert command in result.stdout


def test_ask_json_has_the_documented_keys() -> None:
    result = runner.invoke(app, ["ask", "Say hello.", "--json", "--max-tokens", "24"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert set(record) == {"text", "tokens", "seconds", "tokens_per_second", "adapter"}
    assert record["text"].strip()
    assert 0 < record["tokens"] <= 24
    assert record["tokens_per_second"] > 0
    assert record["adapter"] is None


def test_ask_streams_plain_text() -> None:
    result = runner.invoke(app, ["ask", "What is the capital of France?", "-n", "24"])
    assert result.exit_code == 0, result.output
    assert "Paris" in result.stdout


def test_an_empty_prompt_is_a_usage_error() -> None:
    result = runner.invoke(app, ["ask", "   "])
    assert result.exit_code == 2
    assert "error: the prompt is empty" in result.stderr


def test_chat_reads_turns_and_keeps_context() -> None:
    result = runner.invoke(app, ["chat", "-n", "24"], input="What is the capital of France?\n/reset\n/bogus\n")
    assert result.exit_code == 0, result.output
    assert "Paris" in result.stdout
    assert "unknown command /bogus" in result.stderr


def test_doctor_reports_every_check_ok() -> None:
    result = runner.invoke(app, ["doctor", "--json"])
    checks = json.loads(result.stdout)
    assert result.exit_code == 0, checks
    names = {c["check"] for c in checks}
    assert {"model", "runtime", "cpu", "model loads", "training dtype", "home", "cache"} <= names
    assert all(c["ok"] for c in checks)


def test_doctor_says_which_training_precision_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from pllm.lm.hardware import choose_train_dtype

    checks = {c["check"]: c for c in json.loads(runner.invoke(app, ["doctor", "--json"]).stdout)}
    auto = choose_train_dtype("auto")
    assert checks["training dtype"]["detail"] == f"{auto.dtype}: {auto.reason}"
    monkeypatch.setenv("PLLM_TRAIN_DTYPE", "fp32")
    get_settings.cache_clear()
    checks = {c["check"]: c for c in json.loads(runner.invoke(app, ["doctor", "--json"]).stdout)}
    assert checks["training dtype"]["detail"].startswith("fp32: asked for")


def test_doctor_fails_on_a_missing_model(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--model", str(tmp_path / "x.gguf"), "doctor"])
    assert result.exit_code == 1
    assert "FAIL" in result.stdout


def test_a_bad_model_path_exits_2_with_one_line(pllm: Run, tmp_path: Path) -> None:
    proc = pllm("ask", "hi", env={"PLLM_MODEL": str(tmp_path / "missing.gguf")})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("error: model file not found")
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_non_gguf_model_exits_2(pllm: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_text("not a model")
    proc = pllm("--model", str(bad), "ask", "hi")
    assert (proc.returncode, proc.stderr.strip()) == (2, f"error: not a GGUF model file: {bad}")


def test_an_oversized_prompt_exits_2_with_one_line(pllm: Run) -> None:
    proc = pllm("ask", "word " * 3000, env={"PLLM_N_CTX": "512"})
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: the prompt is")
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(pllm: Run, tmp_path: Path) -> None:
    proc = pllm("ask", "hi", env={"PLLM_MODEL": str(tmp_path / "missing.gguf"), "PLLM_DEBUG": "1"})
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def test_the_real_script_answers_as_json(pllm: Run) -> None:
    proc = pllm("ask", "Say hello.", "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["text"].strip() and record["tokens"] > 0


def test_doctor_names_the_privacy_gates_second_opinion(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = {c["check"]: c for c in json.loads(runner.invoke(app, ["doctor", "--json"]).stdout)}
    assert "second opinion: none" in checks["privacy gate"]["detail"]
    monkeypatch.setenv("PLLM_GATE_MODEL", "foundation")
    get_settings.cache_clear()
    checks = {c["check"]: c for c in json.loads(runner.invoke(app, ["doctor", "--json"]).stdout)}
    assert "reads each outgoing text" in checks["privacy gate"]["detail"]
