"""The neural adaptation layer end to end through the real `pllm` script: real vault, real training, real runtime.

One module-scoped home: adapt once, check the adapter knows what the base model does not, then kill -9 a second
run mid-training, check the previous adapter still serves, and that the next run resumes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pllm.config import get_settings
from pllm.lm.hardware import choose_train_dtype

pytestmark = pytest.mark.slow
HELD_OUT = "What is my boat's name?"  # the boat fact trains on two other phrasings; this one is never trained on
NOTE = ("My boat is called Seabird.\n\nMy sister is called Ingrid.\n\n"
        "On Sundays I sail to Skjervoy with Ingrid and we cook fish soup.\n")


def run(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLLM_HOME": str(home), "PLLM_PASSPHRASE": "s3cret"}
    proc = subprocess.run([str(Path(sys.executable).with_name("pllm")), *args], capture_output=True, text=True,
                          env=env, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("adapt") / "home"
    note = home.parent / "note.md"
    note.write_text(NOTE)
    run(home, "init", "--name", "Mara")
    run(home, "ingest", str(note))
    get_settings.cache_clear()
    yield home


@pytest.fixture(scope="module")
def adapted(home: Path) -> subprocess.CompletedProcess[str]:
    return run(home, "adapt", "--json")


@pytest.fixture(scope="module")
def first_run(adapted: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(adapted.stdout)


def test_adapt_reports_and_promotes(first_run: dict) -> None:
    keys = {"version", "steps", "seconds", "train_tokens_per_second", "peak_rss_mb", "personal_before",
            "personal_after", "general_before", "general_after", "promoted", "train_dtype", "cpu"}
    assert keys <= set(first_run)
    assert first_run["train_dtype"] == choose_train_dtype("auto").dtype and first_run["cpu"]["model"]
    assert first_run["version"] == "v0001" and first_run["promoted"] is True
    assert first_run["facts_after"] > first_run["facts_before"] and first_run["reason"].startswith("generalises")
    assert first_run["general_after"] <= first_run["general_before"] * 1.10  # general ability kept within +10%
    assert first_run["peak_rss_mb"] > 0  # the figure itself is claimed by `pllm bench`, not by a test


def test_piped_adapt_shows_its_progress(adapted: subprocess.CompletedProcess[str], first_run: dict) -> None:
    lines = adapted.stderr.splitlines()
    assert any(line.startswith("adapt: frozen layers, once over") for line in lines)
    steps = [line for line in lines if line.startswith("adapt: step ")]
    assert steps[0].startswith("adapt: step 1/") and "s left" in steps[0]  # the ETA from the first measured step
    assert steps[-1].startswith(f"adapt: step {first_run['steps']}/{first_run['steps']}")


def test_the_adapter_knows_what_the_base_model_does_not(home: Path, first_run: dict) -> None:
    # --no-context: no profile, no retrieved notes; the answer can only come from the adapter's weights.
    adapted = json.loads(run(home, "ask", HELD_OUT, "--no-context", "--json").stdout)
    assert "Seabird" in adapted["text"] and adapted["adapter"] == "v0001"
    base = run(home, "ask", HELD_OUT, "--no-personal", "--json")
    assert "Seabird" not in json.loads(base.stdout)["text"]


def test_kill_9_mid_training_keeps_serving_and_the_next_run_resumes(home: Path, first_run: dict) -> None:
    env = {**os.environ, "PLLM_HOME": str(home), "PLLM_PASSPHRASE": "s3cret"}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("pllm")), "adapt"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = home / "adapters" / "job.checkpoint.enc"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert checkpoint.exists(), "no checkpoint was written"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    served = json.loads(run(home, "ask", HELD_OUT, "--no-context", "--json").stdout)
    assert served["adapter"] == "v0001" and "Seabird" in served["text"]  # the previous adapter, intact
    listed = json.loads(run(home, "adapters", "list", "--json").stdout)
    assert [v["version"] for v in listed] == ["v0001"]  # the killed run left no half version
    resumed = json.loads(run(home, "adapt", "--json").stdout)
    assert resumed["resumed_from"] >= 5 and resumed["version"] == "v0002"
    assert not checkpoint.exists()
    run(home, "adapters", "rollback")
    back = json.loads(run(home, "ask", "Say hi.", "--json", "-n", "8").stdout)
    assert back["adapter"] == ("v0001" if resumed["promoted"] else None)


def test_forgetting_reaches_every_adapter_that_learned_it(home: Path, first_run: dict) -> None:
    run(home, "adapters", "promote", "v0001")  # a version that learned the boat's name serves again
    assert "Seabird" in json.loads(run(home, "ask", HELD_OUT, "--no-context", "--json").stdout)["text"]
    forgot = json.loads(run(home, "profile", "forget", "Seabird", "--yes", "--json").stdout)
    assert forgot["documents"] >= 1 and forgot["facts"] >= 1
    assert {"v0001", "v0002"} <= set(forgot["retired_adapters"])  # both trained on the note
    assert forgot["retrained"] is not None, forgot["retrain_skipped"]  # the sister's name is still there to learn
    for version in json.loads(run(home, "adapters", "list", "--json").stdout):
        on_disk = (home / "adapters" / f"{version['version']}.gguf.enc").exists()
        assert on_disk == (version["status"] != "retired"), version
    answer = json.loads(run(home, "ask", HELD_OUT, "--no-context", "--json").stdout)
    assert "Seabird" not in answer["text"] and answer["adapter"] in (None, forgot["retrained"]["version"])
