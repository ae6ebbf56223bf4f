"""`pllm doctor`: is this machine ready? Each check says OK or what is wrong and how to fix it.

Checks the model file, that llama.cpp loads it, the runtime's version and build flags against the CPU's features
(a wheel built on another CPU can crash with an illegal instruction), and the folders pllm writes to.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from pllm import __version__
from pllm.config import Settings
from pllm.console import joining_progress
from pllm.errors import PllmError
from pllm.lm.hardware import choose_train_dtype, cpu_info
from pllm.lm.models import resolve_foundation_model, resolve_model, speed_class
from pllm.lm.runtime import Runtime
from pllm.personal.pii_model import gate_reader
from pllm.personal.privacy import spacy_model_path

# Instruction sets llama.cpp's CPU backend cares about: /proc/cpuinfo name -> llama_print_system_info name.
CPU_FEATURES = {"avx": "AVX", "avx2": "AVX2", "fma": "FMA", "f16c": "F16C", "avx512f": "AVX512"}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


def runtime_build_info() -> str:
    """llama.cpp's own description of its build: the CPU features compiled in, per backend."""
    from llama_cpp import llama_cpp as C

    return C.llama_print_system_info().decode(errors="replace").strip()


def build_features(info: str) -> set[str]:
    """Feature names the build reports as on, e.g. {'AVX2', 'AVX512'} from '... AVX2 = 1 | AVX512 = 1 ...'."""
    on = set()
    for part in info.replace(":", "|").split("|"):
        key, _, value = part.partition("=")
        if value.strip() == "1":
            on.add(key.strip())
    return on


def _folder(name: str, path: Path, *, must_exist: bool) -> Check:
    if path.exists():
        writable = os.access(path, os.W_OK)
        return Check(name, writable, f"{path}" + ("" if writable else " is not writable"))
    parent = next((p for p in path.parents if p.exists()), None)
    if must_exist:
        return Check(name, False, f"{path} does not exist")
    ok = parent is not None and os.access(parent, os.W_OK)
    return Check(name, ok, f"{path} (created on first use)" if ok else f"cannot create {path}")


def _guard(name: str, fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except PllmError as exc:
        return Check(name, False, str(exc))
    except ImportError as exc:
        return Check(name, False, f"{exc}: run `make setup`")


def _model_check(settings: Settings) -> Check:
    model = resolve_model(settings)
    return Check("model", True, f"{model.name}, {model.size_mb:.0f} MB, from {model.source}: {model.path}")


def _load_check(settings: Settings) -> Check:
    runtime = Runtime.from_settings(settings)
    try:
        template = "chat template in the GGUF" if runtime.has_chat_template else "no chat template (base model)"
        return Check("model loads", True, f"in {runtime.load_seconds:.2f} s, n_ctx {runtime.n_ctx}, {template}; "
                     f"{runtime.model.path.name} ({runtime.model.source})")
    finally:
        runtime.close()


def _runtime_check() -> Check:
    import llama_cpp

    info = runtime_build_info()
    return Check("runtime", True, f"llama-cpp-python {llama_cpp.__version__}; build: {info}")


def _cpu_check() -> Check:
    cpu = cpu_info()
    have = [name for flag, name in CPU_FEATURES.items() if flag in cpu.flags]
    built = build_features(runtime_build_info())
    missing = sorted((built & set(CPU_FEATURES.values())) - set(have)) if cpu.flags else []
    if missing:
        return Check("cpu", False, f"the runtime was built for {', '.join(missing)}, which this CPU lacks: "
                     "delete the cached wheel and run `make setup` to rebuild")
    noted = " ".join(str(f) for f in cpu.as_dict()["flags"])  # type: ignore[attr-defined]
    return Check("cpu", True, f"{cpu.model}, {platform.machine()}, {os.cpu_count()} cores; features: {noted or '?'}")


def _training_check(settings: Settings) -> Check:
    choice = choose_train_dtype(settings.train_dtype)
    slow = choice.dtype == "bf16" and not cpu_info().native_bf16
    return Check("training dtype", not slow, f"{choice.dtype}: {choice.reason}"
                 + (" (set PLLM_TRAIN_DTYPE=auto)" if slow else ""))


def _privacy_check(settings: Settings) -> Check:
    second = gate_reader(settings)
    return Check("privacy gate", True, f"NER model {spacy_model_path().name} (packaged, loaded by path); "
                 f"second opinion: {second}")


def _cloud_check(settings: Settings) -> Check:
    """The T-tier: where the device would send (nothing is contacted here), and the model `pllm cloud serve` uses."""
    target = f"device -> {settings.cloud_url}" if settings.cloud_url else "device: no PLLM_CLOUD_URL (cloud off)"
    if settings.upstream_url:
        return Check("cloud", True, f"{target}; serve: upstream {settings.upstream_url}")
    with joining_progress() as on_bytes:
        model = resolve_foundation_model(settings, on_bytes)
    return Check("cloud", True, f"{target}; serve: T-model {model.name}, {model.size_mb:.0f} MB, "
                 f"{speed_class(model)}")


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order a person would fix them."""
    offline = all(os.environ.get(v) == "1" for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return [
        Check("pllm", True, f"{__version__} on Python {sys.version.split()[0]}"),
        _guard("model", lambda: _model_check(settings)),
        _guard("runtime", _runtime_check),
        _guard("cpu", _cpu_check),
        _guard("model loads", lambda: _load_check(settings)),
        _guard("training dtype", lambda: _training_check(settings)),
        _guard("privacy gate", lambda: _privacy_check(settings)),
        _guard("cloud", lambda: _cloud_check(settings)),
        Check("threads", True, f"{settings.threads} (cores available: {len(os.sched_getaffinity(0))})"),
        _folder("home", settings.paths.home, must_exist=False),
        _folder("cache", settings.paths.cache, must_exist=False),
        Check("offline", offline, "HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1" if offline
              else "set HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1 (the pllm command sets them itself)"),
    ]


def table(checks: list[Check]) -> Table:
    out = Table(title="pllm doctor", show_lines=False)
    out.add_column("check")
    out.add_column("status")
    out.add_column("detail", overflow="fold")
    for c in checks:
        out.add_row(c.name, "[green]OK[/green]" if c.ok else "[red]FAIL[/red]", c.detail)
    return out
