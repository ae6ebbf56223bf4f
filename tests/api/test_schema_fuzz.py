"""Schemathesis, a fuzzer nobody here wrote, against the OpenAPI schema each server serves: `pllm serve` (the real
packaged model, a real vault) and `pllm cloud serve` (the real embedded T-model), on loopback, every check on, a
bounded number of examples. Every status a route answers must be declared with its error body, every schema-valid
request accepted (tests/api/schemathesis.toml says the one allowance and why), every invalid one refused, and a 405
must list in `Allow` what the path takes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pllm.api.app import create_app
from pllm.cloud.server import create_app as create_cloud_app
from pllm.config import Settings
from pllm.http_serving import serve_background
from pllm.lm.foundation import EmbeddedFoundation
from pllm.lm.runtime import Runtime
from pllm.personal.vault import Vault

PASSPHRASE = "s3cret"
NOTE = "My boat is called Seabird and I sail it on Sundays."
CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = "8"  # per operation and phase: about a minute for each server on 2 cores


def _fuzz(url: str, token: str, report: Path) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).with_name("st")
    return subprocess.run(
        [str(st), "--no-color", "--config-file", str(CONFIG), "run", url + "/openapi.json", "--checks", "all",
         "--phases", "examples,coverage,fuzzing", "--max-examples", EXAMPLES, "--workers", "1", "--seed", "1",
         "--request-timeout", "120", "-H", f"Authorization: Bearer {token}"],
        text=True, capture_output=True, timeout=900, cwd=report)


def _verdict(run: subprocess.CompletedProcess[str]) -> str:
    return run.stdout[-6000:] + run.stderr[-2000:]


def test_the_device_api_keeps_its_schema(vault: Vault, tmp_path: Path) -> None:
    with serve_background(create_app(Settings(api_token="fuzz-token"), vault)) as url:
        run = _fuzz(url, "fuzz-token", tmp_path)
    assert run.returncode == 0 and "failure" not in run.stdout.split("SUMMARY")[-1].lower(), _verdict(run)


def test_the_t_tier_keeps_its_schema(runtime: Runtime, tmp_path: Path) -> None:
    """The T-tier's service on the packaged 135M model: the contract is the same whatever model answers, and the
    fuzzer's long answers under its own JSON Schemas would take Gemma's 262k-token vocabulary minutes each."""
    # one credit, and none earned by the fuzzer's contributions: the answers it may ask for stay short
    settings = Settings(home=tmp_path / "cloud", cloud_rate_per_minute=100_000, ledger_opening_grant=1.0,
                        ledger_feedback_credit=0.0)
    app = create_cloud_app(settings, foundation=EmbeddedFoundation(runtime), state_dir=tmp_path / "cloud")
    key = app.state.devices.add("fuzzer")
    with serve_background(app) as url:
        run = _fuzz(url, key, tmp_path)
    assert run.returncode == 0 and "failure" not in run.stdout.split("SUMMARY")[-1].lower(), _verdict(run)
