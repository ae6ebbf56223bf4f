"""The transformers view of a GGUF model: dequantised once to an fp32 safetensors copy in the cache, loaded from there.

The LoRA trainer and the bench's reference row use it. Loading a GGUF through transformers takes ~14 s; the cached
copy loads in ~0.1 s. Facts from DESIGN.md: transformers marks a GGUF-loaded model as quantized and refuses to save
it unless the quantizer is cleared; a GGUF-loaded Gemma config has `architectures=None`.

    model, tokenizer = load_causal_lm(resolve_model(settings), settings.paths)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from pllm.config import Paths
from pllm.errors import ModelLoadError
from pllm.lm.models import ModelFile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_ARCHITECTURES = {"llama": "LlamaForCausalLM", "gemma3": "Gemma3ForCausalLM", "gemma3_text": "Gemma3ForCausalLM",
                  "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}


def quiet_transformers() -> None:
    """transformers draws its own progress bars and warnings on stderr; pllm shows its own."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    # peft calls a transformers method that transformers 5 renamed; nothing for a pllm user to act on.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def dequantised_dir(model: ModelFile, paths: Paths) -> Path:
    """Where the fp32 copy of `model` lives: keyed by the GGUF's name, size and mtime."""
    stat = model.path.stat()
    key = hashlib.sha256(f"{model.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return paths.models_cache / f"{model.name}-fp32-{key}"


def ensure_dequantised(model: ModelFile, paths: Paths) -> Path:
    """Write the fp32 safetensors copy once (atomically: a killed run leaves no half copy behind)."""
    target = dequantised_dir(model, paths)
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    try:
        hf = AutoModelForCausalLM.from_pretrained(str(model.path.parent), gguf_file=model.path.name,
                                                  dtype="float32")
        tokenizer = AutoTokenizer.from_pretrained(str(model.path.parent), gguf_file=model.path.name)
    except Exception as exc:  # transformers raises many types for an unsupported GGUF
        raise ModelLoadError(f"transformers cannot load {model.path}: {exc}") from None
    hf.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(hf.config, "quantization_config"):
        del hf.config.quantization_config
    if not hf.config.architectures:
        hf.config.architectures = [_ARCHITECTURES.get(hf.config.model_type, type(hf).__name__)]
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    hf.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if not (target / "config.json").is_file():  # another process (a second test worker) may have won the race
        shutil.rmtree(target, ignore_errors=True)  # a half copy from before atomic writes
        with contextlib.suppress(OSError):  # lost the race after all: theirs is as good
            tmp.rename(target)
    shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_causal_lm(model: ModelFile, paths: Paths) -> tuple[Any, Any]:
    """(model, tokenizer) in fp32, eval mode, from the cached dequantised copy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    path = ensure_dequantised(model, paths)
    hf = AutoModelForCausalLM.from_pretrained(str(path), dtype="float32")
    hf.eval()
    return hf, AutoTokenizer.from_pretrained(str(path))
