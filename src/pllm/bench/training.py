"""Training rows of `pllm bench`: a standard 100-item personal update, ours against the naive loop.

Ours: bf16 autocast over a bf16 frozen base, per-batch padding, the step count the adaptation policy picks for 100
items. Naive: fp32 throughout, every batch padded to 128 tokens, a few steps (it is slow) to measure seconds per
step. Each runs in its own process so peak RSS is its own. Then the adapter's size, and decode speed with and
without it on the runtime, alternating A/B.

    python -m pllm.bench.training ours|naive ITEMS STEPS   # one worker; prints a JSON line
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

from pllm.config import Settings, get_settings

GENERIC = ["Sailing to the islands", "Baking rye bread", "Night shifts at the hospital", "Training for a 10k run",
           "Learning Norwegian", "Fixing the old bike", "Planting tomatoes", "Reading crime novels"]


def standard_update(items: int) -> list[Any]:
    """A reproducible 100-item personal update: fact questions, the user's texts, general replay."""
    from pllm.lm.train import Example
    from pllm.personal.adapt import _chat, fact_examples, replay_examples

    facts = [("cat name", "Pixel"), ("boat name", "Seabird"), ("sister name", "Ingrid"), ("lives in", "Tromso"),
             ("works as", "a nurse"), ("favourite food", "fish soup"), ("dog name", "Rex"), ("from", "Bergen")]
    personal = [e for key, value in facts for e in fact_examples(key, value)]
    personal += [Example.of(_chat(f"Write, in my words, about {topic.lower()}."),
                            f"{topic} is how I spend my weekends. It keeps me calm, and I always learn something.")
                 for topic in GENERIC * 4]
    replay = replay_examples()
    return (personal[: items * 2 // 3] + replay * 3)[:items]


def worker(mode: str, items: int, steps: int) -> dict[str, Any]:
    from pllm.lm.export import BaseShape, gguf_lora_bytes
    from pllm.lm.models import resolve_model
    from pllm.lm.train import TrainConfig, train_lora

    settings = get_settings()
    model = resolve_model(settings)
    config = TrainConfig(steps=steps, lr=2e-3, threads=settings.threads,
                         bf16=mode == "ours", pad_to=None if mode == "ours" else 128)
    result = train_lora(model, settings.paths, standard_update(items), config)
    out = {"mode": mode, "items": items, "steps": steps, "seconds": result.seconds,
           "seconds_per_step": result.seconds_per_step, "train_tokens_per_second": result.tokens_per_second,
           "peak_rss_mb": result.peak_rss_mb}
    if mode == "ours":
        adapter = gguf_lora_bytes(result.adapter, BaseShape.of_gguf(model.path), alpha=config.lora.alpha)
        out["adapter_hex"] = adapter.hex()  # random facts of a made-up user: nothing personal crosses the pipe
    return out


def _spawn(mode: str, items: int, steps: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "pllm.bench.training", mode, str(items), str(steps)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"training bench worker failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_training_bench(settings: Settings, *, items: int = 100, steps: int | None = None, naive_steps: int = 4,
                       reps: int = 5, max_tokens: int = 64) -> dict[str, Any]:
    """`steps` defaults to what the adaptation policy plans for `items` (36 for the standard 100)."""
    from pllm.lm.runtime import GenerationConfig, Runtime
    from pllm.personal.adapt import AdaptationPolicy

    steps = steps or AdaptationPolicy().plan(items)[0]
    ours = _spawn("ours", items, steps)
    naive = _spawn("naive", items, naive_steps)
    adapter = bytes.fromhex(ours.pop("adapter_hex"))
    runtime = Runtime.from_settings(settings)
    runtime.load_adapter("bench", adapter)
    prompt = runtime.chat_prompt([{"role": "user", "content": "Write a short story about a lighthouse keeper."}])
    config = GenerationConfig(max_tokens=max_tokens)
    speeds: dict[str, list[float]] = {"without": [], "with": []}
    for i in range(reps):
        for label in (["without", "with"] if i % 2 == 0 else ["with", "without"]):
            runtime.set_adapters({"bench": 1.0} if label == "with" else {})
            speeds[label].append(runtime.complete(prompt, config).decode_tokens_per_second)
    runtime.close()
    without, with_adapter = statistics.median(speeds["without"]), statistics.median(speeds["with"])
    return {
        "update": {k: round(v, 3) if isinstance(v, float) else v for k, v in ours.items()},
        "naive": {k: round(v, 3) if isinstance(v, float) else v for k, v in naive.items()},
        "step_speedup": round(naive["seconds_per_step"] / ours["seconds_per_step"], 2),
        "adapter_mb": round(len(adapter) / 1e6, 2),
        "decode_tokens_per_second": {"without_adapter": round(without, 1), "with_adapter": round(with_adapter, 1)},
        "adapter_decode_ratio": round(with_adapter / without, 3),
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))) + "\n")
