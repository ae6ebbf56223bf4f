"""The training precision follows the CPU: bf16 only where it is native, fp32 everywhere else, overridable."""

from __future__ import annotations

import pytest

from pllm.lm import hardware
from pllm.lm.hardware import CpuInfo, choose_train_dtype, cpu_info

AVX2_ONLY = CpuInfo("AMD EPYC", frozenset({"avx", "avx2", "fma", "f16c"}), 2)
SAPPHIRE = CpuInfo("Intel Xeon", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}), 2)


def test_auto_picks_fp32_without_native_bf16() -> None:
    choice = choose_train_dtype("auto", AVX2_ONLY)
    assert choice.dtype == "fp32" and "no native bf16" in choice.reason


def test_auto_picks_bf16_where_the_cpu_and_torch_have_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "torch_bf16_kernels", lambda: True)
    assert choose_train_dtype("auto", SAPPHIRE).dtype == "bf16"
    monkeypatch.setattr(hardware, "torch_bf16_kernels", lambda: False)  # e.g. ONEDNN_MAX_CPU_ISA=AVX2
    assert choose_train_dtype("auto", SAPPHIRE).dtype == "fp32"


def test_an_explicit_choice_wins_and_says_when_it_is_slow() -> None:
    assert choose_train_dtype("fp32", SAPPHIRE).dtype == "fp32"
    forced = choose_train_dtype("bf16", AVX2_ONLY)
    assert forced.dtype == "bf16" and "emulates" in forced.reason
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        choose_train_dtype("fp16", AVX2_ONLY)


def test_this_machine_is_described() -> None:
    info = cpu_info()
    described = info.as_dict()
    assert info.model and info.cores >= 1 and described["model"] == info.model
    assert set(described["flags"]) <= set(hardware.NOTED_FLAGS)  # type: ignore[arg-type]
    assert info.native_bf16 == any(f in info.flags for f in ("avx512_bf16", "amx_bf16"))
