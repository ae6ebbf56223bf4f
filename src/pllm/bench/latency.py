"""`pllm bench --latency`: time to first token of a personalised request, as `pllm serve` answers it, beside raw
llama-cpp-python on the prompt such a request used to be.

A made-up user's vault (really encrypted, in a temporary folder): a name, 8 facts, 40 diary notes of ~100 tokens
and 30 earlier messages. Twelve questions, each about one of the notes, are asked one after another, and every
engine gets each question in turn (the order rotates, so drift in machine load hits all alike):
- raw, cold: a raw `llama_cpp.Llama` on the whole-item prompt (system, profile, k=4 whole notes, question: ~550
  tokens, what pllm sent before this bench existed) from an empty KV cache, as a server that keeps no state pays.
- raw, warm: the same prompts on one raw `Llama` in sequence: it reuses the longest common token prefix of
  consecutive prompts by itself, until the profile line in the system turn changes.
- pllm: the Assistant as `pllm serve` runs it, retrieval included: the profile as of the hour (so the system turn
  stays the same), each note cut to its sentences most like the question, the system turn's KV state kept.
  Every answer is logged in the vault, as served answers are, so the profile moves as it would.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pllm.bench.speed import answer_seconds, decode_rate
from pllm.config import Settings
from pllm.lm.hardware import cpu_info
from pllm.lm.models import resolve_model
from pllm.lm.runtime import GenerationConfig, Runtime, StreamStats, raw_llama
from pllm.personal.assistant import SYSTEM_PROMPT, Assistant, user_turn
from pllm.personal.profile import build_profile
from pllm.personal.retrieve import RetrievalConfig, Retriever
from pllm.personal.vault import Vault, create_vault

K = 4  # notes in the prompt, as the request in the issue that set the goal
NOTES = 40
QUESTIONS = 12
# The first token, then up to 48 more for the decode rate; a 32- and a 256-token answer's seconds are the first token
# plus that many at the rate (an answer that ends sooner gives its rate over what it wrote, if 8 tokens or more).
ANSWER = GenerationConfig(max_tokens=48, temperature=0.0)
MIN_DECODED = 8

FACTS = [("name of my cat", "Pixel"), ("sister", "Ingrid"), ("home town", "Tromso"), ("job", "night nurse"),
         ("boat", "Seabird"), ("favourite food", "rye bread"), ("running goal", "a 10k under 50 minutes"),
         ("allergy", "walnuts")]
# Each topic: what a note about it says (sentences drawn from these) and a question only its notes answer.
TOPICS: dict[str, tuple[list[str], str]] = {
    "sailing": (["Took Seabird out past the breakwater this morning with {who}.",
                 "The wind came round to the north-west after lunch and we had to tack back for two hours.",
                 "I still need to replace the frayed jib sheet before the next trip.",
                 "We anchored in the lee of {place} and ate cold pancakes.",
                 "The harbour master says the new pontoon opens in {month}."],
                "What did the harbour master say about the pontoon?"),
    "baking": (["Baked two rye loaves with {who}, one with caraway and one plain.",
                "The starter was sluggish after the cold week, so the dough proved for nine hours.",
                "Next time less water: the crumb was gummy in the middle.",
                "Gave the caraway loaf to the neighbours at {place}.",
                "The oven thermometer reads twenty degrees low, which explains the pale crust."],
               "Why was the crust of my rye bread pale?"),
    "running": (["Ran the river loop with {who}, eleven kilometres in 58 minutes.",
                 "My left knee ached on the downhill past {place}, so I walked the last stretch.",
                 "The physio suggested strength work twice a week and shorter strides.",
                 "Signed up for the {month} 10k; the goal is still under fifty minutes.",
                 "New shoes arrived, half a size bigger than the old pair."],
                "What did the physio suggest for my knee?"),
    "work": (["Three night shifts in a row on the ward; {who} covered the last one.",
              "A patient at {place} asked for me by name, which made the week.",
              "The new rota starts in {month} and puts me on fewer weekends.",
              "We finally got the second infusion pump fixed.",
              "I must renew my medication-handling certificate before it lapses."],
             "Which certificate do I need to renew?"),
    "family": (["Ingrid called from {place}; her twins start school in {month}.",
                "We planned a weekend at the cabin with {who} and the kids.",
                "Mum's birthday dinner is at the fish restaurant by the quay.",
                "Ingrid wants the old sewing machine, so I will ship it next week.",
                "Dad finally learned to send photos from his phone."],
               "When do Ingrid's twins start school?"),
    "cat": (["Pixel knocked the plant off the windowsill again.",
             "The vet at {place} says Pixel is a little overweight and should get less dry food.",
             "Bought a feather toy; Pixel ignored it for a day and then would not let it go.",
             "{who} fed Pixel while I was away and sent a photo every evening.",
             "Pixel's vaccination is due in {month}."],
            "What did the vet say about Pixel's weight?"),
}
PEOPLE = ["Ingrid", "Tomas", "Aino", "Per", "Maja", "Lars"]
PLACES = ["Kvaloya", "Skansen", "the north quay", "Prestvannet", "Telegrafbukta", "the old bridge"]
MONTHS = ["March", "April", "May", "June", "August", "October"]
MESSAGES = ["How long should rye dough prove?", "What is a good stretch for a sore knee?",
            "Suggest a dinner without walnuts.", "How do I splice a rope?", "Remind me what Pixel eats.",
            "What time is sunset in Tromso in May?"]


def build_vault(path: Path, passphrase: str, *, seed: int = 0, questions: int = QUESTIONS
                ) -> tuple[Vault, list[str]]:
    """The made-up user's vault and the questions to ask it."""
    rng = random.Random(seed)
    vault = create_vault(path, passphrase, name="Kari")
    for key, value in FACTS:
        vault.upsert_fact(key, value, source="bench", confidence=0.9)
    now = time.time()
    topics = list(TOPICS)
    for n in range(NOTES):
        sentences, _ = TOPICS[topics[n % len(topics)]]
        picked = rng.sample(sentences, 5)
        text = " ".join(s.format(who=rng.choice(PEOPLE), place=rng.choice(PLACES), month=rng.choice(MONTHS))
                        for s in picked)
        vault.add_document(source=f"note-{n}", kind="note", content=text, created_at=now - (NOTES - n) * 86400)
    for n in range(30):
        vault.log_interaction(prompt=MESSAGES[n % len(MESSAGES)], answer="(an earlier answer)", latency_s=1.0,
                              tokens=10, personal=True, client="bench", sentiment=0.0,
                              created_at=now - (30 - n) * 3600 * 5)
    return vault, [TOPICS[topics[n % len(topics)]][1] for n in range(questions)]


def whole_item_prompt(runtime: Runtime, vault: Vault, question: str) -> str:
    """The personalised prompt as pllm built it before: the profile of this instant, k=4 whole notes."""
    hits = Retriever.from_vault(vault).search(question, RetrievalConfig(k=K, budget_tokens=10_000))
    system = SYSTEM_PROMPT + "\n\nAbout the user:\n" + build_profile(vault).summary()
    return runtime.chat_prompt([{"role": "system", "content": system},
                                {"role": "user", "content": user_turn(question, hits, 0)}])


@dataclass
class Timed:
    """One request: seconds to its first token, and the decode rate after it (0 when too few tokens came)."""

    first: float
    decode_tps: float


def _timed_raw(llm: Any, prompt: str, *, cold: bool) -> Timed:
    if cold:
        llm.reset()
        llm._ctx.kv_cache_clear()
    started = time.perf_counter()
    first, tokens = 0.0, 0
    for chunk in llm.create_completion(prompt, max_tokens=ANSWER.max_tokens, temperature=0.0, top_k=1,
                                       repeat_penalty=1.0, stream=True):
        if chunk["choices"][0]["text"]:
            tokens += 1
            first = first or time.perf_counter() - started
    ended = time.perf_counter() - started
    # no text at all: the whole wait counts as the first token, and no rate (no tokens)
    return Timed(first or ended, decode_rate(tokens, ended - first, at_least=MIN_DECODED))


def _timed_pllm(runtime: Runtime, vault: Vault, question: str) -> tuple[Timed, int]:
    assistant = Assistant(runtime, vault=vault, client="bench", retrieval=RetrievalConfig(k=K, budget_tokens=10_000))
    stats = StreamStats()
    started = time.perf_counter()
    first = 0.0
    for _ in assistant.stream(question, ANSWER, stats):  # exhausted, so the answer is logged as a served one is
        first = first or time.perf_counter() - started
    first = first or time.perf_counter() - started
    decoding = stats.ended_at - stats.first_token_at if stats.first_token_at else 0.0
    rendered = runtime.chat_prompt(assistant.messages(question, assistant.last_context))
    timed = Timed(first, decode_rate(stats.tokens, decoding, at_least=MIN_DECODED))
    return timed, len(runtime.tokenize(rendered))


def _row(engine: str, timed: list[Timed], prompt_tokens: list[int]) -> dict[str, Any]:
    seconds = [t.first for t in timed]
    rates = [t.decode_tps for t in timed if t.decode_tps > 0]
    first, decode = statistics.median(seconds), statistics.median(rates) if rates else 0.0
    return {"engine": engine, "requests": len(seconds),
            "first_token_seconds": round(first, 4),
            "first_token_min": round(min(seconds), 4), "first_token_max": round(max(seconds), 4),
            "decode_tokens_per_second": round(decode, 2),
            **answer_seconds(first, decode),
            "prompt_tokens": int(statistics.median(prompt_tokens))}


def run_latency_bench(settings: Settings, *, questions: int = QUESTIONS, tick: Callable[[], None] = lambda: None
                      ) -> dict[str, Any]:
    """Time to first token, decode rate and the end-to-end seconds of a short and a long answer per engine
    (medians over the questions), and the ratios against raw, cold."""
    runtime = Runtime.from_settings(settings)
    packaged = resolve_model(settings).path  # raw llama-cpp-python gets the file as it is packaged
    raw_cold, raw_warm = raw_llama(packaged, settings), raw_llama(packaged, settings)
    times: dict[str, list[Timed]] = {"raw, cold": [], "raw, warm": [], "pllm": []}
    tokens: dict[str, list[int]] = {name: [] for name in times}
    with tempfile.TemporaryDirectory(prefix="pllm-latency-") as folder:
        vault, asked = build_vault(Path(folder) / "vault.db", "latency-bench", questions=questions)
        try:
            _timed_raw(raw_cold, whole_item_prompt(runtime, vault, "warm-up"), cold=True)  # page in the weights
            for n, question in enumerate(asked):
                whole = whole_item_prompt(runtime, vault, question)
                whole_tokens = len(runtime.tokenize(whole))

                def cold(p: str = whole, t: int = whole_tokens) -> None:
                    times["raw, cold"].append(_timed_raw(raw_cold, p, cold=True))
                    tokens["raw, cold"].append(t)

                def warm(p: str = whole, t: int = whole_tokens) -> None:
                    times["raw, warm"].append(_timed_raw(raw_warm, p, cold=False))
                    tokens["raw, warm"].append(t)

                def ours(q: str = question) -> None:
                    timed, count = _timed_pllm(runtime, vault, q)
                    times["pllm"].append(timed)
                    tokens["pllm"].append(count)

                runs: list[Callable[[], None]] = [cold, warm, ours]
                for run in runs[n % 3:] + runs[:n % 3]:
                    run()
                    tick()
        finally:
            vault.close()
    raw_cold.close()
    raw_warm.close()
    runtime.close()
    rows = [_row(name, times[name], tokens[name]) for name in times]
    cold_median = rows[0]["first_token_seconds"]
    return {
        "model": runtime.model.name, "threads": settings.threads, "questions": len(asked), "k": K,
        "cpu": cpu_info().as_dict(), "rows": rows,
        "ratio_to_raw_cold": {r["engine"]: round(r["first_token_seconds"] / cold_median, 3) for r in rows},
        "decode_ratio_to_raw": round(rows[2]["decode_tokens_per_second"] / rows[0]["decode_tokens_per_second"], 3)
        if rows[0]["decode_tokens_per_second"] else None,
        "prefix_hits": runtime.prefix_hits,
    }
