"""`pllm bench`: decode speed and time to first token of pllm's runtime against the raw runtimes.

pllm's Runtime and a raw `llama_cpp.Llama` load the same GGUF in one process and answer the same chat prompt,
alternating A/B for N repetitions, each from an empty KV cache; we report medians and the ratio pllm / raw (the
machine is shared and noisy, so only same-run ratios mean anything). The transformers fp32 path is a reference row.

    pllm bench --reps 5 --json
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pllm.config import Settings
from pllm.lm.hf import load_causal_lm
from pllm.lm.models import resolve_model, runtime_model
from pllm.lm.runtime import GenerationConfig, Runtime, raw_llama

BENCH_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


# The answers a personalised request gets, short and long: their seconds are the first token plus the answer's
# tokens at the measured decode rate (`pllm bench --latency` and `--formats`).
ANSWER_LENGTHS = (32, 256)


def decode_rate(tokens: int, seconds: float, *, at_least: int = 2) -> float:
    """Tokens per second after the first one, over the `seconds` they took (0 with fewer than `at_least` tokens)."""
    return (tokens - 1) / seconds if tokens >= at_least and seconds > 0 else 0.0


def answer_seconds(first: float, decode: float) -> dict[str, float | None]:
    """`end_to_end_<n>_seconds` for each of ANSWER_LENGTHS (None without a decode rate)."""
    return {f"end_to_end_{n}_seconds": round(first + (n - 1) / decode, 3) if decode else None
            for n in ANSWER_LENGTHS}


@dataclass
class Sample:
    """One timed generation."""

    tokens: int
    seconds: float
    first_token_seconds: float

    @property
    def decode_tps(self) -> float:
        return decode_rate(self.tokens, self.seconds - self.first_token_seconds)


@dataclass
class Row:
    """Medians over the repetitions of one engine."""

    engine: str
    samples: list[Sample] = field(default_factory=list)

    def summary(self) -> dict[str, float | int | str]:
        s = self.samples
        return {
            "engine": self.engine,
            "reps": len(s),
            "tokens": int(statistics.median(x.tokens for x in s)),
            "decode_tokens_per_second": round(statistics.median(x.decode_tps for x in s), 2),
            "first_token_seconds": round(statistics.median(x.first_token_seconds for x in s), 4),
            "tokens_per_second": round(statistics.median(x.tokens / x.seconds for x in s), 2),
        }


def _time_pllm(runtime: Runtime, prompt: str, config: GenerationConfig) -> Sample:
    runtime.reset()  # no prompt cache across reps: both engines process the whole prompt every time
    c = runtime.complete(prompt, config)
    return Sample(c.tokens, c.seconds, c.first_token_seconds)


def _time_raw(llm: Any, prompt: str, max_tokens: int) -> Sample:
    llm.reset()
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    for chunk in llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, top_k=1,
                                       repeat_penalty=1.0, stream=True):
        if not chunk["choices"][0]["text"]:  # the closing chunk carries only finish_reason
            continue
        tokens += 1
        if tokens == 1:
            first = time.perf_counter() - started
    return Sample(tokens, time.perf_counter() - started, first)


def _time_transformers(settings: Settings, prompt: str, max_tokens: int, reps: int,
                       tick: Callable[[], None]) -> Row:
    """Greedy decoding with a KV cache in fp32 torch: the path a user without llama.cpp would take."""
    import torch

    torch.set_num_threads(settings.threads)
    model, tokenizer = load_causal_lm(resolve_model(settings), settings.paths)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    eos = set(filter(None, [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]))
    row = Row("transformers-fp32")
    for _ in range(reps):
        started = time.perf_counter()
        with torch.inference_mode():
            out = model(ids, use_cache=True)
            first = time.perf_counter() - started
            tokens = 0
            for _step in range(max_tokens):
                token = out.logits[:, -1].argmax(-1, keepdim=True)
                if int(token) in eos:
                    break
                tokens += 1
                out = model(token, past_key_values=out.past_key_values, use_cache=True)
        row.samples.append(Sample(tokens, time.perf_counter() - started, first))
        tick()
    return row


def run_speed_bench(settings: Settings, *, reps: int = 5, max_tokens: int = 128, prompt: str = BENCH_PROMPT,
                    transformers: bool = True, tick: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Run the A/B comparison; `tick` is called after every timed generation (progress bars).

    Raw llama-cpp-python loads the model file as it is packaged. Where pllm runs another file (its Q8_0 copy,
    `model_format`), a third engine is raw llama-cpp-python on that same file, so the file's share and the engine's
    share of any difference are apart."""
    runtime = Runtime.from_settings(settings)
    packaged = resolve_model(settings).path
    engines = {"llama-cpp-python": raw_llama(packaged, settings)}
    if runtime.model.path != packaged:
        engines["llama-cpp-python, pllm's file"] = raw_llama(runtime.model.path, settings,
                                                             extra_buffers=runtime.model.repacked)
    text = runtime.chat_prompt([{"role": "user", "content": prompt}])
    prompt_tokens = len(runtime.tokenize(text))
    config = GenerationConfig(max_tokens=max_tokens, temperature=0.0)
    timed: list[tuple[Row, Callable[[], Sample]]] = [(Row("pllm"), lambda: _time_pllm(runtime, text, config))]
    timed += [(Row(name), functools.partial(_time_raw, llm, text, max_tokens)) for name, llm in engines.items()]
    for _, run in timed:  # warm-up: page in the weights
        run()
    for i in range(reps):
        # Rotate which engine goes first, so drift in machine load hits all alike.
        for row, run in timed[i % len(timed):] + timed[:i % len(timed)]:
            row.samples.append(run())
            tick()
    for llm in engines.values():
        llm.close()
    runtime.close()
    rows = [row.summary() for row, _ in timed]
    if transformers:
        rows.append(_time_transformers(settings, text, max_tokens, reps, tick).summary())
    by_engine = {r["engine"]: r for r in rows}
    ratio = float(by_engine["pllm"]["decode_tokens_per_second"]) / float(
        by_engine["llama-cpp-python"]["decode_tokens_per_second"])
    ttft_ratio = float(by_engine["pllm"]["first_token_seconds"]) / float(
        by_engine["llama-cpp-python"]["first_token_seconds"])
    return {
        "model": runtime.model.name,
        "threads": settings.threads,
        "reps": reps,
        "max_tokens": max_tokens,
        "prompt_tokens": prompt_tokens,
        "rows": rows,
        "decode_ratio": round(ratio, 3),
        "first_token_ratio": round(ttft_ratio, 3),
        **({"decode_ratio_same_file": round(float(by_engine["pllm"]["decode_tokens_per_second"]) / float(
            by_engine["llama-cpp-python, pllm's file"]["decode_tokens_per_second"]), 3)}
           if "llama-cpp-python, pllm's file" in by_engine else {}),
    }


def timed_engines(settings: Settings, *, transformers: bool) -> int:
    """How many engines `run_speed_bench` times (for a progress bar's total)."""
    return 2 + (runtime_model(settings).path != resolve_model(settings).path) + transformers

