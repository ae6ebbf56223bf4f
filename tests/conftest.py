"""Shared fixtures: every test gets its own PLLM_HOME; the real packaged model is loaded once per session."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pllm.config import Settings, available_cores, get_settings
from pllm.lm.export import lora_tensor_name, write_gguf_lora
from pllm.lm.models import resolve_model
from pllm.lm.runtime import Runtime

# Each pytest worker (`make test` runs two, pytest-xdist) gets its share of the cores, at most two threads: workers
# that each spun two threads on a two-core machine would fight over it. Tests, and the `pllm` processes they start,
# read it as PLLM_THREADS.
THREADS = max(1, min(2, available_cores() // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
os.environ["PLLM_THREADS"] = str(THREADS)
# Tests that only need *a* T-model use Gemma 3 270M (fast); the ones about the default T-model ask for Qwen by name.
os.environ["PLLM_FOUNDATION_MODEL"] = "gemma-3-270m"
# The served format is what `pllm bench --formats` chose on the machine (kept in the model cache); the suite runs
# the same Q8_0 copy everywhere, and the tests of `auto` clear this.
os.environ["PLLM_MODEL_FORMAT"] = "Q8_0"


# Every process this worker starts, and each test's own, carry a mark in their environment (children inherit it), so
# that one left running is found even after it was reparented to init: the suite fails on it instead of leaving it.
RUN_MARK, TEST_MARK = "PYTEST_PLLM_RUN", "PYTEST_PLLM_TEST"
os.environ[RUN_MARK] = uuid.uuid4().hex


def marked_processes(key: str, value: str, wait_s: float = 15.0) -> list[str]:
    """Processes (not this one) whose environment holds key=value, once they had `wait_s` to end."""
    mark = f"{key}={value}".encode()
    deadline = time.monotonic() + wait_s
    while True:
        left = []
        for pid in psutil.pids():
            if pid == os.getpid():
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if mark in f.read().split(b"\0"):
                        left.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:120]}")
            except (OSError, psutil.Error):
                continue
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


@pytest.fixture(autouse=True)
def nothing_outlives_the_test() -> Iterator[None]:
    """Fails the test that leaves a process of its own running (a server, a SuperNode, an adaptation job)."""
    os.environ[TEST_MARK] = uuid.uuid4().hex
    yield
    left = marked_processes(TEST_MARK, os.environ.pop(TEST_MARK))
    assert not left, f"still running after the test: {left}"


@pytest.fixture(scope="session", autouse=True)
def nothing_outlives_the_run() -> Iterator[None]:
    """The same for processes that module and session fixtures started: none may outlive the suite."""
    yield
    left = marked_processes(RUN_MARK, os.environ[RUN_MARK])
    assert not left, f"still running after the suite: {left}"

SMOLLM2 = {"hidden": 576, "layers": 30, "heads": 9, "kv_heads": 3}


def files_containing(needle: bytes, *folders: Path, since: float = 0.0) -> list[Path]:
    """Regular files under `folders`, changed since `since`, whose bytes contain `needle`. The other pytest worker
    makes and removes temp folders while this walks them, so whatever vanishes mid-walk is skipped (os.walk ignores
    a folder it cannot list), never an error."""
    found = []
    for folder in folders:
        for root, _dirs, names in os.walk(folder):
            for name in names:
                path = Path(root) / name
                try:
                    info = path.lstat()
                    if stat.S_ISREG(info.st_mode) and info.st_mtime >= since and needle in path.read_bytes():
                        found.append(path)
                except OSError:
                    continue
    return found


@pytest.fixture
def files_holding() -> Callable[..., list[Path]]:
    """`files_holding(needle, *folders, since=t)`: the files that hold `needle` (see files_containing)."""
    return files_containing


@pytest.fixture(autouse=True)
def pllm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point PLLM_HOME at a fresh folder and ignore any user config file and PLLM_* variables (but the cache, the
    worker's threads, the T-model and the served format); the gate without the T-model's reading."""
    for key in list(os.environ):
        if key.startswith("PLLM_") and key not in ("PLLM_CACHE_DIR", "PLLM_THREADS", "PLLM_FOUNDATION_MODEL",
                                                    "PLLM_MODEL_FORMAT"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    monkeypatch.setenv("PLLM_HOME", str(home))
    # The gate's reading by the T-model costs ~4 s a text: the suite runs the rules unless a test asks for it
    # (tests/personal/test_pii_model.py runs the default).
    monkeypatch.setenv("PLLM_GATE_MODEL", "none")
    # Retrieval's embeddings (on by default) load MiniLM in every `pllm ask`: the suite runs BM25 unless a test
    # asks for them (tests/personal/test_retrieve.py, test_personal_cli.py's first test run the default).
    monkeypatch.setenv("PLLM_EMBEDDINGS", "false")
    monkeypatch.setenv("PLLM_CONFIG", str(tmp_path / "no-config.toml"))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def model_path() -> Path:
    return resolve_model(Settings(model=None)).path


@pytest.fixture(scope="session")
def runtime(model_path: Path) -> Iterator[Runtime]:
    """The real packaged SmolLM2-135M-Instruct on llama.cpp (loads in ~0.2 s)."""
    rt = Runtime(resolve_model(Settings(model=model_path)), n_ctx=1024, threads=THREADS)
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def foundation() -> Iterator[object]:
    """The T-tier's embedded model: the real packaged Gemma 3 270M (a base model), loaded once."""
    from pllm.lm.foundation import EmbeddedFoundation

    model = EmbeddedFoundation.from_settings(Settings())
    yield model
    model.runtime.close()


def render_speech(text: str, path: Path, *, silence_s: float = 0.0) -> Path:
    """`text` spoken by Debian's espeak-ng into a wav file as `pllm eval --task speech` renders it, with `silence_s`
    of silence after it: speech for the voice tests, where there is no microphone. Skips the test where espeak-ng is
    not installed."""
    import shutil
    import wave

    from pllm.bench.speech import render

    if shutil.which("espeak-ng") is None:
        pytest.skip("no espeak-ng on PATH (`make setup` installs Debian's where it runs as root)")
    render(text, path)
    if silence_s:
        with wave.open(str(path), "rb") as f:
            params, frames = f.getparams(), f.readframes(f.getnframes())
        with wave.open(str(path), "wb") as f:
            f.setparams(params)
            f.writeframes(frames + b"\0" * int(params.framerate * silence_s) * params.sampwidth * params.nchannels)
    return path


@pytest.fixture
def speech(tmp_path: Path) -> Callable[..., Path]:
    """speech("What is my boat called?") -> a wav file of it (espeak-ng)."""
    count = iter(range(1_000_000))
    return lambda text, **kw: render_speech(text, tmp_path / f"speech-{next(count)}.wav", **kw)


@pytest.fixture
def random_lora(tmp_path: Path) -> Callable[..., Path]:
    """Make a random LoRA on q and v of every SmolLM2 layer, written as a real GGUF adapter file."""

    def make(seed: int, rank: int = 8, scale: float = 0.05) -> Path:
        rng = np.random.default_rng(seed)
        hidden = SMOLLM2["hidden"]
        kv = hidden // SMOLLM2["heads"] * SMOLLM2["kv_heads"]
        tensors = {}
        for layer in range(SMOLLM2["layers"]):
            for module, out in (("q_proj", hidden), ("v_proj", kv)):
                tensors[lora_tensor_name(layer, module, "a")] = rng.normal(0, scale, (rank, hidden))
                tensors[lora_tensor_name(layer, module, "b")] = rng.normal(0, scale, (out, rank))
        path = tmp_path / f"lora-{seed}.gguf"
        write_gguf_lora(path, arch="llama", alpha=2.0 * rank, tensors=tensors)
        return path

    return make


def run_pllm(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
             timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The real console script, as a user runs it (the environment is the test's, PLLM_HOME included)."""
    script = Path(sys.executable).with_name("pllm")
    return subprocess.run([str(script), *args], capture_output=True, text=True, input=stdin, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def pllm() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed `pllm` script: pllm("ask", "hi", env={...}, stdin="...")."""
    return run_pllm


@pytest.fixture(scope="session")
def cooking_expert(tmp_path_factory: pytest.TempPathFactory) -> object:
    """A cooking expert trained once on the real packaged model (6 steps on tests/data/cooking-corpus.jsonl) and
    examined, not registered: each test registers it in its own home (`ExpertRegistry.register`)."""
    from pllm.expert.distill import DistillReport
    from pllm.expert.domains import load_domain, read_qa_jsonl
    from pllm.expert.train import ExpertTrainConfig, train_expert

    settings = Settings(home=tmp_path_factory.mktemp("expert-home"))
    pairs = read_qa_jsonl(Path(__file__).parent / "data" / "cooking-corpus.jsonl")
    return train_expert(settings, load_domain("cooking"), pairs, DistillReport(t_model="corpus"),
                        ExpertTrainConfig(steps=6), register=False)
