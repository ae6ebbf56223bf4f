"""Training rows of `pllm bench`: the standard 100-item personal update, and an ablation against the naive loop.

Each loop runs in its own process, so its peak RSS is its own. The ablation adds one technique per row, each timed
over the same first few steps (same seed, same batches):

  naive     fp32, full forward, logits at every position, every batch padded to 128 tokens, LoRA on q,k,v,o of
            every layer (the loop before this bench)
  padding   + per-batch padding
  targets   + the output layer only at target positions (no attention mask: causal SDPA)
  upper     + LoRA on the top 10 layers only (attention and MLP), the frozen layers below run once per distinct
            example and reused

Then the full update as `pllm adapt` runs it (the precision `lm.hardware` picks; on a CPU with native bf16 also in
fp32, to show the choice pays), with what it taught: the fact asked on a phrasing never trained on (answered by
llama.cpp with the exported adapter on the Q4_1 base) and general perplexity before and after. FLOP/s are matmul
FLOPs estimated from layer shapes, as a fraction of the machine's matmul peak measured in the same process.

    python -m pllm.bench.training MODE ITEMS STEPS [DTYPE]   # one worker; prints a JSON line
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from pllm.config import Settings, get_settings
from pllm.lm.adapter import Purpose, train_adapter, train_config
from pllm.lm.export import merge_lora_gguf
from pllm.lm.hardware import choose_train_dtype, cpu_info
from pllm.lm.runtime import GenerationConfig, Runtime
from pllm.lm.train import ATTENTION, Example, LoraSettings, perplexity
from pllm.personal.adapt import AdaptationPolicy, _chat, fact_examples, replay_examples
from pllm.personal.gate import facts_answered

GENERIC = ["Sailing to the islands", "Baking rye bread", "Night shifts at the hospital", "Training for a 10k run",
           "Learning Norwegian", "Fixing the old bike", "Planting tomatoes", "Reading crime novels"]
FACTS = [("cat name", "Pixel"), ("boat name", "Seabird"), ("sister name", "Ingrid"), ("lives in", "Tromso"),
         ("works as", "a nurse"), ("favourite food", "fish soup"), ("dog name", "Rex"), ("from", "Bergen")]
ABLATION = ("naive", "padding", "targets", "upper")
NAIVE_STEPS = 36  # the naive loop's step count for a 100-item update (the policy before this bench existed)


@dataclass
class StandardUpdate:
    """Training examples as `pllm adapt` builds them, and what is held out to judge what they taught."""

    examples: list[Any]
    held_facts: list[tuple[Any, str]]  # (a fact question phrased as never trained on, the value it must name)
    held_general: list[Any]


def standard_update(items: int) -> StandardUpdate:
    """A reproducible personal update: fact questions (two phrasings of each, repeated), texts, general replay."""
    personal, held = [], []
    for key, value in FACTS:
        qa = fact_examples(key, value)
        personal += qa[:-1] * 3
        held.append((qa[-1], value))
    personal += [Example.of(_chat(f"Write, in my words, about {topic.lower()}."),
                            f"{topic} is how I spend my weekends. It keeps me calm, and I always learn something.")
                 for topic in GENERIC * 4]
    replay = replay_examples()
    mine = personal[: items * 3 // 5]
    return StandardUpdate(mine + (replay[:-8] * 3)[: items - len(mine)], held, replay[-8:])


def long_items(n: int = 240, words: int = 190) -> list[Any]:
    """A task adapter's training set on long items (LaMP-3 shape): a ~250-token review, its 1-5 rating as target."""
    text = " ".join(e.target for e in replay_examples()).split()
    out = []
    for i in range(n):
        review = " ".join(text[(i * 37) % len(text):] + text)[: words * 6].rsplit(" ", 1)[0]
        out.append(Example.of(_chat(f"Rate this review from 1 to 5.\n\n{review}"), str(1 + i % 5)))
    return out


def matmul_peak_gflops(dtype: str, threads: int, size: int = 1536, reps: int = 6) -> float:
    """The best GFLOP/s of a square matmul in `dtype` on `threads` threads: the ceiling training is measured against."""
    import torch

    torch.set_num_threads(threads)
    kind = torch.bfloat16 if dtype == "bf16" else torch.float32
    a, b = torch.randn(size, size, dtype=kind), torch.randn(size, size, dtype=kind)
    best = float("inf")
    for _ in range(reps):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def config_for(mode: str, steps: int, dtype: str, settings: Settings) -> Any:
    policy = AdaptationPolicy()
    # The first rows keep the adapter shape of the loop before this bench (q,k,v,o on every layer).
    lora = LoraSettings(layers=None, target_modules=ATTENTION) if mode in ABLATION[:3] else policy.lora
    return train_config(settings, Purpose.PERSONAL, n_examples=100, lora=lora, steps=steps, dtype=dtype,
                        batch_size=policy.batch_size, target_only=mode not in ("naive", "padding"),
                        pad_to=128 if mode == "naive" else None)


def worker(mode: str, items: int, steps: int, dtype: str) -> dict[str, Any]:
    settings = get_settings()
    update = standard_update(items)
    config = config_for(mode, steps, dtype, settings)
    trained = train_adapter(settings, long_items() if mode == "long" else update.examples, config,
                            keep_model=mode == "full")
    result = trained.result
    peak = matmul_peak_gflops(dtype, settings.threads)
    achieved = result.flops / result.seconds / 1e9
    out = {"mode": mode, "dtype": dtype, "items": items, "steps": steps, "lora_layers": config.lora.layers,
           "seconds": result.seconds, "prepare_seconds": result.prepare_seconds,
           "seconds_per_step": result.seconds_per_step, "train_tokens_per_second": result.tokens_per_second,
           "peak_rss_mb": result.peak_rss_mb, "gflops": achieved, "matmul_peak_gflops": peak,
           "peak_fraction": achieved / peak}
    if mode == "full":
        out["general_before"] = perplexity(result.model, result.tokenizer, update.held_general, use_adapter=False)
        out["general_after"] = perplexity(result.model, result.tokenizer, update.held_general)
        out["adapter_hex"] = trained.gguf.hex()  # random facts of a made-up user: nothing personal crosses the pipe
    return out


def _spawn(mode: str, items: int, steps: int, dtype: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "pllm.bench.training", mode, str(items), str(steps), dtype],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"training bench worker failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def facts_recalled(runtime: Any, update: StandardUpdate, adapter: str | None) -> int:
    """Held-out fact questions answered with the value, as the adaptation gate counts them, `adapter` applied."""
    runtime.set_adapters({adapter: 1.0} if adapter else {})
    return facts_answered(runtime, update.held_facts, max_tokens=24)


def _round(row: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def run_training_bench(settings: Settings, *, items: int = 100, steps: int | None = None, ablation_steps: int = 3,
                       reps: int = 5, max_tokens: int = 64, tick: Any = lambda _: None) -> dict[str, Any]:
    """`steps` defaults to what the adaptation policy plans for `items`. `tick(label)` reports each loop started."""
    choice = choose_train_dtype(settings.train_dtype)
    steps = steps or AdaptationPolicy().plan(items)[0]
    rows = []
    for mode in ABLATION:
        tick(f"{mode} ({ablation_steps} steps, fp32)")
        rows.append(_spawn(mode, items, ablation_steps, "fp32"))
    full = []
    for dtype in dict.fromkeys([choice.dtype, *(["fp32"] if choice.dtype == "bf16" else [])]):
        tick(f"full update ({steps} steps, {dtype})")
        full.append(_spawn("full", items, steps, dtype))
    tick("held-out facts and decode speed on llama.cpp")
    update = standard_update(items)
    runtime = Runtime.from_settings(settings)
    base_hits = facts_recalled(runtime, update, None)
    adapters = {}
    for row in full:
        name = f"full-{row['dtype']}"
        adapters[name] = bytes.fromhex(row.pop("adapter_hex"))
        runtime.load_adapter(name, adapters[name])
        row["facts_recalled"] = facts_recalled(runtime, update, name)
        row["adapter_mb"] = len(adapters[name]) / 1e6
    # The adapter as `pllm serve` runs an active one: folded into a copy of the model.
    first = f"full-{full[0]['dtype']}"
    started = time.perf_counter()
    folded = merge_lora_gguf(runtime.model.path, adapters[first])
    merge_seconds = time.perf_counter() - started
    started = time.perf_counter()
    merged = Runtime.from_gguf_bytes(f"{runtime.model.name}+{first}", folded, settings, folded={first: 1.0},
                                     repacked=runtime.model.repacked)
    load_seconds = time.perf_counter() - started
    merged_hits = facts_recalled(merged, update, None)
    prompt = runtime.chat_prompt([{"role": "user", "content": "Write a short story about a lighthouse keeper."}])
    config = GenerationConfig(max_tokens=max_tokens)
    speeds: dict[str, list[float]] = {"without": [], "with": [], "merged": []}
    for i in range(reps):
        order = ["without", "with", "merged"]
        for label in order[i % 3:] + order[:i % 3]:  # rotated, so drift in machine load hits all alike
            runtime.set_adapters({first: 1.0} if label == "with" else {})
            engine = merged if label == "merged" else runtime
            speeds[label].append(engine.complete(prompt, config).decode_tokens_per_second)
    merged.close()
    runtime.close()
    without, with_adapter = statistics.median(speeds["without"]), statistics.median(speeds["with"])
    with_merged = statistics.median(speeds["merged"])
    naive, ours = rows[0], full[0]
    naive_seconds = NAIVE_STEPS * naive["seconds_per_step"]
    return {
        "cpu": cpu_info().as_dict(),
        "train_dtype": choice.dtype,
        "train_dtype_reason": choice.reason,
        "ablation": [_round(r) for r in rows],
        "update": _round(ours),
        "updates": [_round(r) for r in full],
        "facts_held_out": len(update.held_facts),
        "facts_recalled_base": base_hits,
        "naive_update_seconds_projected": round(naive_seconds, 1),
        "update_speedup": round(naive_seconds / ours["seconds"], 2),
        "step_speedup": round(naive["seconds_per_step"] / ours["seconds_per_step"], 2),
        "decode_tokens_per_second": {"without_adapter": round(without, 1), "with_adapter": round(with_adapter, 1),
                                     "with_adapter_merged": round(with_merged, 1)},
        "adapter_decode_ratio": round(with_adapter / without, 3),
        "merged_decode_ratio": round(with_merged / without, 3),
        "merged": {"facts_recalled": merged_hits, "facts_recalled_applied": full[0]["facts_recalled"],
                   "merge_seconds": round(merge_seconds, 2), "load_seconds": round(load_seconds, 2),
                   "model_mb": round(len(folded) / 1e6, 1)},
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])) + "\n")
