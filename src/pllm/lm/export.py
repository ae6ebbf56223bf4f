"""GGUF LoRA files that llama.cpp loads, written with the `gguf` package alone (no converter script).

Facts (DESIGN.md, checked byte for byte against llama.cpp's converter):
- metadata: `general.architecture` = the base model's, `general.type = "adapter"`, `adapter.type = "lora"`,
  `adapter.lora.alpha` (float32); llama.cpp scales by alpha / rank and reads the rank from lora_b.
- tensors: `blk.{i}.{attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down}.weight.lora_a|lora_b`; lora_a is
  PEFT's `lora_A.weight` (r x in), lora_b is `lora_B.weight` (out x r).
- llama-family bases store q and k rows permuted for RoPE, so lora_b rows of q and k get the same permutation.

    write_gguf_lora(path, arch="llama", alpha=16.0, tensors={"blk.0.attn_q.weight.lora_a": a, ...})
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pllm.lm.models import read_gguf_header

# PEFT / transformers module name -> llama.cpp tensor name
GGUF_MODULES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
# Architectures whose q/k weights llama.cpp's converter permutes for RoPE.
ROPE_PERMUTED_ARCHS = {"llama"}


def lora_tensor_name(layer: int, module: str, part: str) -> str:
    """`blk.3.attn_q.weight.lora_a` from (3, "q_proj", "a")."""
    if module not in GGUF_MODULES:
        raise ValueError(f"no GGUF name for module {module!r}; known: {', '.join(GGUF_MODULES)}")
    if part not in ("a", "b"):
        raise ValueError("part must be 'a' or 'b'")
    return f"blk.{layer}.{GGUF_MODULES[module]}.weight.lora_{part}"


def permute_rope_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Permute output rows per head as llama.cpp's converter does for q/k (halves x head_dim/2, swapped)."""
    rows = weight.shape[0]
    if rows % (2 * n_head):
        raise ValueError(f"{rows} rows do not split into {n_head} heads of even size")
    return (weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def write_gguf_lora(path: Path | str, *, arch: str, alpha: float, tensors: dict[str, np.ndarray],
                    dtype: type = np.float16) -> None:
    """Write a LoRA adapter GGUF at `path` (a file path, or /proc/self/fd/N of an in-memory file)."""
    import gguf

    if not tensors:
        raise ValueError("a LoRA adapter needs at least one tensor")
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for name in sorted(tensors):
        writer.add_tensor(name, np.ascontiguousarray(tensors[name], dtype=dtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


_PEFT_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+_proj)\.lora_([AB])(?:\.\w+)?\.weight$")


@dataclass(frozen=True)
class BaseShape:
    """What the export needs to know about the base model."""

    arch: str  # general.architecture of the base GGUF
    n_head: int
    n_head_kv: int

    @classmethod
    def of_gguf(cls, path: Path) -> BaseShape:
        stat = path.stat()  # parsing a GGUF's header takes seconds (its vocabulary): once per file version
        return _shape_of(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _shape_of(path: str, size: int, mtime_ns: int) -> BaseShape:
    import gguf

    reader = gguf.GGUFReader(path)

    def value(key: str) -> Any:
        f = reader.fields[key]
        return f.contents() if hasattr(f, "contents") else f.parts[f.data[0]].tolist()[0]

    arch = str(value("general.architecture"))
    return BaseShape(arch, int(value(f"{arch}.attention.head_count")),
                     int(value(f"{arch}.attention.head_count_kv")))


def peft_to_gguf_tensors(state: dict[str, Any], shape: BaseShape) -> dict[str, np.ndarray]:
    """PEFT LoRA weights (lora_A: r x in, lora_B: out x r) to llama.cpp's tensor names and layout."""
    out: dict[str, np.ndarray] = {}
    for key, tensor in state.items():
        match = _PEFT_KEY.search(key)
        if match is None:
            raise ValueError(f"cannot export {key}: only LoRA A/B weights of {', '.join(GGUF_MODULES)} are supported")
        layer, module, part = int(match.group(1)), match.group(2), match.group(3).lower()
        weight = tensor.detach().float().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
        if part == "b" and shape.arch in ROPE_PERMUTED_ARCHS and module in ("q_proj", "k_proj"):
            weight = permute_rope_rows(weight, shape.n_head if module == "q_proj" else shape.n_head_kv)
        out[lora_tensor_name(layer, module, part)] = weight
    return out


def gguf_lora_bytes(state: dict[str, Any], shape: BaseShape, *, alpha: float, dtype: type = np.float16) -> bytes:
    """The adapter as GGUF bytes, built in an anonymous in-memory file (nothing touches the disk)."""
    with memory_file(b"") as path:
        write_gguf_lora(path, arch=shape.arch, alpha=alpha, tensors=peft_to_gguf_tensors(state, shape), dtype=dtype)
        return path.read_bytes()


def _copy_metadata(reader: Any, writer: Any, *, skip: tuple[str, ...] = ()) -> None:
    """Every key/value of `reader` into `writer` (the architecture is the writer's own, GGUF.* are the reader's)."""
    import gguf

    for name, f in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture" or name in skip:
            continue
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = f.types[-1]
            items = [str(bytes(f.parts[i]), "utf-8") if sub == gguf.GGUFValueType.STRING else f.parts[i].tolist()[0]
                     for i in f.data]
            writer.add_array(name, items)
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_string(name, str(bytes(f.parts[-1]), "utf-8"))
        else:
            writer.add_key_value(name, f.parts[-1].tolist()[0], vtype)


def _architecture(reader: Any) -> str:
    return str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")


def dequantize_gguf(src: Path, dst: Path) -> None:
    """Write an all-F32 copy of a GGUF model (the same weights transformers dequantises; for exactness checks)."""
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(str(src))
    writer = gguf.GGUFWriter(str(dst), _architecture(reader))
    _copy_metadata(reader, writer, skip=("general.file_type",))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for t in reader.tensors:
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        data = dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        writer.add_tensor(t.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# Block formats a merged tensor is rounded back into, in place (gguf's Python code quantizes them). Not the 4-bit
# ones, though gguf could: folded into Q4_0, a test adapter's effect on the logits came back 43% off the applied
# adapter's (Q5_0 12%, Q8_0 20%; tests/lm/test_export.py), so there the active adapter is applied unmerged.
MERGEABLE = ("Q8_0", "Q5_0", "Q5_1")


def merge_lora_gguf(base: Path, adapter: bytes, *, scale: float = 1.0) -> bytes:
    """The base model with a GGUF LoRA adapter folded into its weights, as GGUF bytes (never written to disk).

    llama.cpp computes W x + scale * alpha / r * B (A x) for an applied adapter: here W + scale * alpha / r * B A is
    computed once in float32 from the dequantised W and rounded to W's own format again, in place, so the file is
    the base's byte for byte except the adapted tensors. Decoding then costs what the base costs; the unmerged
    adapter adds two small matmuls per adapted weight to every token. The adapted tensors must be in a MERGEABLE
    format; the coarser the format, the more of a small adapter its rounding takes away (the adaptation gate and
    the training bench measure the merged copy, they do not assume it).
    """
    import gguf
    from gguf.quants import dequantize, quantize

    mergeable = {gguf.GGMLQuantizationType[name] for name in MERGEABLE}
    index = read_gguf_header(base).tensors
    with memory_file(adapter) as adapter_path:
        lora = gguf.GGUFReader(str(adapter_path))
        alpha = float(lora.fields[gguf.Keys.Adapter.LORA_ALPHA].parts[-1][0])
        parts = {t.name: np.asarray(t.data, dtype=np.float32) for t in lora.tensors}
    merged = bytearray(base.read_bytes())
    for name in sorted({n.rsplit(".", 1)[0] for n in parts}):
        tensor = index.get(name)
        if tensor is None or f"{name}.lora_a" not in parts or f"{name}.lora_b" not in parts:
            raise ValueError(f"the adapter's {name} has no counterpart in {base.name}")
        kind = gguf.GGMLQuantizationType(tensor.ggml_type)
        if kind not in mergeable:
            raise ValueError(f"{name} is {kind.name} in {base.name}, not one of {', '.join(MERGEABLE)}")
        block, block_bytes = gguf.GGML_QUANT_SIZES[kind]
        cols, rows = tensor.shape
        size = rows * cols // block * block_bytes
        raw = np.frombuffer(merged, dtype=np.uint8, count=size, offset=tensor.offset).reshape(rows, -1)
        weight = dequantize(raw, kind).reshape(rows, cols).astype(np.float32)
        lora_a, lora_b = parts[f"{name}.lora_a"].reshape(-1, cols), parts[f"{name}.lora_b"].reshape(rows, -1)
        weight += (scale * alpha / lora_a.shape[0]) * (lora_b @ lora_a)
        merged[tensor.offset:tensor.offset + size] = quantize(weight, kind).tobytes()
    return bytes(merged)


@contextlib.contextmanager
def memory_file(data: bytes) -> Iterator[Path]:
    """`data` as an anonymous in-memory file (memfd) with a path that tools can open; nothing touches the disk."""
    fd = os.memfd_create("pllm", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        yield Path(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
