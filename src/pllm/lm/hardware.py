"""What this CPU can do, and the training precision that follows from it.

bf16 is fast only where the CPU does it natively (avx512_bf16 or AMX); elsewhere torch emulates it, ~20x slower
than fp32 (measured on an AVX2-only EPYC: 133 s against 6.7 s for one training step). So the trainer asks
`choose_train_dtype` and never assumes. Every benchmark and report records `cpu_info().as_dict()` beside its figures.

    choice = choose_train_dtype("auto")   # DtypeChoice(dtype="fp32", reason="no native bf16 (avx512_bf16/amx_bf16)")
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pllm.config import available_cores

TRAIN_DTYPES = ("auto", "fp32", "bf16")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Flags worth recording beside a figure: what the runtimes and the trainer choose their kernels by.
NOTED_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile",
               "amx_bf16", "amx_int8", "avx_vnni", "neon", "asimd", "sve")


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as the OS describes it."""

    model: str
    flags: frozenset[str]
    cores: int

    @property
    def native_bf16(self) -> bool:
        return any(f in self.flags for f in NATIVE_BF16_FLAGS)

    def as_dict(self) -> dict[str, object]:
        return {"model": self.model, "cores": self.cores, "machine": platform.machine(),
                "flags": [f for f in NOTED_FLAGS if f in self.flags]}


@cache
def cpu_info() -> CpuInfo:
    """Model name and feature flags from /proc/cpuinfo (Linux); the platform's words elsewhere."""
    model, flags = "", frozenset[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "cpu model") and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = frozenset(value.split())
    except OSError:
        pass
    return CpuInfo(model or platform.processor() or platform.machine() or "unknown", flags, available_cores())


def repack_safe() -> bool:
    """llama.cpp's repacked ("extra") buffers include AMX where the CPU has it, and its AMX matmul crashes on some
    of those machines (llama.cpp issue 20824): repacked buffers only where the CPU has no AMX."""
    return not any(flag.startswith("amx") for flag in cpu_info().flags)


@dataclass(frozen=True)
class DtypeChoice:
    """The precision the trainer runs in, and why (doctor and every report print both)."""

    dtype: str  # "fp32" or "bf16"
    reason: str


def torch_bf16_kernels() -> bool | None:
    """Whether torch's own oneDNN reports native bf16 kernels; None when torch is not importable.

    It honours ONEDNN_MAX_CPU_ISA, so a run restricted to AVX2 (to reproduce the slower machines) says no.
    """
    try:
        import torch
    except ImportError:
        return None
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and os.environ.get(
            "ATEN_CPU_CAPABILITY", "").lower() not in ("avx2", "default")
    except (AttributeError, RuntimeError):
        return None


def choose_train_dtype(requested: str = "auto", info: CpuInfo | None = None) -> DtypeChoice:
    """`auto`: bf16 where the CPU has native bf16 and torch's kernels use it, fp32 everywhere else."""
    if requested not in TRAIN_DTYPES:
        raise ValueError(f"train dtype must be one of {', '.join(TRAIN_DTYPES)}, not {requested!r}")
    info = info or cpu_info()
    if requested == "fp32":
        return DtypeChoice("fp32", "asked for (PLLM_TRAIN_DTYPE=fp32)")
    if requested == "bf16":
        note = "" if info.native_bf16 else "; this CPU has no native bf16, so torch emulates it (~20x slower)"
        return DtypeChoice("bf16", "asked for (PLLM_TRAIN_DTYPE=bf16)" + note)
    if not info.native_bf16:
        return DtypeChoice("fp32", "auto: no native bf16 on this CPU (avx512_bf16/amx_bf16), emulated bf16 is ~20x "
                                   "slower than fp32")
    if torch_bf16_kernels() is False:
        return DtypeChoice("fp32", "auto: the CPU has bf16 but torch's kernels are restricted below it")
    flags = "/".join(f for f in NATIVE_BF16_FLAGS if f in info.flags)
    return DtypeChoice("bf16", f"auto: native bf16 on this CPU ({flags})")
