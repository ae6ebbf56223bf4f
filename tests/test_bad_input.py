"""Bad input never ends in a traceback: every command, walked with an invalid setting, an unwritable output path and a
missing input file, answers one `error:` line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pllm.cli import app
from pllm.config import get_settings

runner = CliRunner()
PASS = {"PLLM_PASSPHRASE": "s3cret"}
# Every command with arguments that are valid but for the fault under test.
COMMANDS = {
    "init": [], "ingest": ["notes.md"], "ask": ["hi", "-n", "4"], "chat": [], "adapt": ["--auto"],
    "bench": ["--reps", "1", "-n", "2", "--no-training", "--no-transformers"],
    "eval": ["--task", "lamp2", "--synthetic", "small", "--methods", "stats"], "doctor": [],
    "profile show": [], "profile export": [], "profile forget": ["x", "--yes"], "profile rekey": [],
    "adapters list": [], "adapters promote": ["v0001"], "adapters rollback": [],
    "adapters export": ["v0001", "out"], "augment": ["--no-adapt"], "privacy report": [],
    "cloud serve": ["--port", "8799"], "cloud keys add": ["phone"], "cloud keys list": [],
    "cloud keys revoke": ["phone"], "serve": ["--port", "8798"], "ledger show": [],
    "expert train": ["cooking", "--steps", "1"], "expert list": [], "expert ask": ["cooking", "hi"],
    "privacy device-key": [], "privacy receipts": [], "privacy share-feedback": ["--yes"],
    "fed simulate": ["--expert", "cooking"], "fed server": ["--expert", "cooking"],
    "fed client": ["--data", "pairs.jsonl"], "backup": ["home.backup"], "restore": ["home.backup"],
}


def one_error_line(result: object, *, contains: str) -> None:
    output = result.output  # type: ignore[attr-defined]
    assert result.exception is None or isinstance(result.exception, SystemExit), output  # type: ignore[attr-defined]
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and contains in errors[0], output
    assert result.exit_code == 2, output  # type: ignore[attr-defined]


def test_the_walk_covers_every_command() -> None:
    import typer

    def leaves(command: object, path: str) -> set[str]:
        subcommands = getattr(command, "commands", None)
        if not subcommands:
            return {path}
        return set().union(*(leaves(sub, f"{path} {name}".strip()) for name, sub in subcommands.items()))

    assert leaves(typer.main.get_command(app), "") == set(COMMANDS)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_invalid_setting_is_one_line(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLLM_THREADS", "0")
    get_settings.cache_clear()
    result = runner.invoke(app, [*command.split(), *COMMANDS[command]], env=PASS, input="")
    one_error_line(result, contains="bad setting PLLM_THREADS")


def test_a_malformed_config_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text("threads = [unclosed\n")
    monkeypatch.setenv("PLLM_CONFIG", str(config))
    get_settings.cache_clear()
    one_error_line(runner.invoke(app, ["ask", "hi"]), contains=str(config))


@pytest.fixture
def vault_with_a_version(pllm_home: Path) -> Path:
    from pllm.personal.adapters import AdapterStore
    from pllm.personal.vault import create_vault

    vault = create_vault(pllm_home / "vault.db", PASS["PLLM_PASSPHRASE"])
    AdapterStore(vault, pllm_home / "adapters").save(gguf=b"GGUF-bytes", peft=b"peft-bytes", base_model="m",
                                                      lora={"r": 8}, stats={})
    vault.close()
    return pllm_home


@pytest.mark.parametrize("args", [
    ["profile", "export", "-o", "/proc/nope/profile.json"],
    ["adapters", "export", "v0001", "/proc/nope/adapter"],
    ["eval", "--task", "lamp2", "--synthetic", "small", "--methods", "stats", "--report", "/proc/nope/report"],
])
def test_an_unwritable_output_is_one_line(args: list[str], vault_with_a_version: Path) -> None:
    one_error_line(runner.invoke(app, args, env=PASS), contains="/proc/nope")


@pytest.mark.parametrize("args, says", [
    (["ingest", "/no/such/notes.md"], "/no/such/notes.md"),
    (["eval", "--task", "lamp2", "--data", "/no/such/lamp", "--methods", "stats"], "/no/such/lamp"),
    (["--model", "/no/such/model.gguf", "ask", "hi"], "/no/such/model.gguf"),
    (["expert", "train", "cooking", "--corpus", "/no/such/pairs.jsonl"], "/no/such/pairs.jsonl"),
    (["expert", "train", "cooking", "--topics", "/no/such/topics.txt"], "/no/such/topics.txt"),
    (["fed", "client", "--data", "/no/such/pairs.jsonl"], "/no/such/pairs.jsonl"),
])
def test_a_missing_input_is_one_line(args: list[str], says: str, vault_with_a_version: Path) -> None:
    one_error_line(runner.invoke(app, args, env=PASS), contains=says)
