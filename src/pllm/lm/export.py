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

from pathlib import Path

import numpy as np

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
