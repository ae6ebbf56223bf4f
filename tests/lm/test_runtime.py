"""The llama.cpp runtime on the real packaged model: answers, streaming, stops, limits, adapters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pllm.errors import AdapterError, PromptTooLongError
from pllm.lm.runtime import GenerationConfig, Runtime, StreamStats, _stop_prefix_len, json_list_items

HELLO = [{"role": "user", "content": "Say hello."}]


def test_chat_template_comes_from_the_gguf(runtime: Runtime) -> None:
    prompt = runtime.chat_prompt(HELLO)
    assert runtime.has_chat_template
    assert "<|im_start|>user\nSay hello.<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_an_answer_comes_back(runtime: Runtime) -> None:
    c = runtime.chat(HELLO, GenerationConfig(max_tokens=32))
    assert c.text.strip()
    assert 0 < c.tokens <= 32
    assert c.prompt_tokens > 5
    assert c.seconds > 0 and c.tokens_per_second > 0
    assert c.finish_reason in ("stop", "length")
    assert "hello" in c.text.lower() or "hi" in c.text.lower()


def test_greedy_is_deterministic(runtime: Runtime) -> None:
    config = GenerationConfig(max_tokens=24)
    assert runtime.chat(HELLO, config).text == runtime.chat(HELLO, config).text


def test_streaming_yields_token_by_token(runtime: Runtime) -> None:
    prompt = runtime.chat_prompt([{"role": "user", "content": "Count from one to ten in words."}])
    config = GenerationConfig(max_tokens=40)
    stats = StreamStats()
    pieces = list(runtime.stream(prompt, config, stats))
    assert len(pieces) >= 10  # one piece per token (a multi-byte character may join two)
    assert len(pieces) <= stats.tokens + 1
    assert "".join(p.text for p in pieces) == runtime.complete(prompt, config).text
    assert stats.first_token_at >= stats.started_at and stats.ended_at >= stats.first_token_at


def test_max_tokens_is_honoured(runtime: Runtime) -> None:
    c = runtime.chat([{"role": "user", "content": "Write a long essay about the sea."}], GenerationConfig(max_tokens=7))
    assert c.tokens == 7
    assert c.finish_reason == "length"


def test_stop_strings_cut_the_answer(runtime: Runtime) -> None:
    messages = [{"role": "user", "content": "Count from one to ten."}]
    full = runtime.chat(messages, GenerationConfig(max_tokens=40)).text
    stop = full[len(full) // 2 : len(full) // 2 + 3]  # three characters from the middle of the answer
    cut = runtime.chat(messages, GenerationConfig(max_tokens=40, stop=("never-appears", stop))).text
    assert cut == full[: full.index(stop)]


def test_sampling_depends_on_the_seed(runtime: Runtime) -> None:
    messages = [{"role": "user", "content": "Invent a name for a cat."}]
    texts = {runtime.chat(messages, GenerationConfig(max_tokens=12, temperature=1.2, seed=s)).text for s in range(4)}
    assert len(texts) > 1
    same = GenerationConfig(max_tokens=12, temperature=1.2, seed=7)
    assert runtime.chat(messages, same).text == runtime.chat(messages, same).text


def test_an_oversized_prompt_is_refused(runtime: Runtime) -> None:
    with pytest.raises(PromptTooLongError, match="context holds 1024"):
        runtime.complete("word " * 2000)


@pytest.mark.parametrize("text, stops, held", [
    ("hello wor", ("world",), 3), ("hello", ("world",), 0), ("ab", ("abc", "b"), 2), ("", ("x",), 0),
])
def test_stop_prefix_is_held_back(text: str, stops: tuple[str, ...], held: int) -> None:
    assert _stop_prefix_len(text, stops) == held


def test_generation_config_validates() -> None:
    with pytest.raises(ValueError):
        GenerationConfig(max_tokens=0)


# -- adapters: random LoRAs written as real GGUF adapter files (conftest.random_lora) ------------------------
@pytest.fixture
def fresh_runtime(model_path: Path) -> Iterator[Runtime]:
    from pllm.config import Settings
    from pllm.lm.models import resolve_model

    rt = Runtime(resolve_model(Settings(model=model_path)), n_ctx=512, threads=Settings().threads)
    yield rt
    rt.close()


def test_adapters_change_answers_and_switch_back(fresh_runtime: Runtime, random_lora: Callable[..., Path]) -> None:
    rt = fresh_runtime
    config = GenerationConfig(max_tokens=16)
    base = rt.chat(HELLO, config).text
    rt.load_adapter("one", random_lora(seed=1))
    rt.load_adapter("two", random_lora(seed=2).read_bytes())  # bytes: via memfd
    assert rt.adapters == ["one", "two"]
    rt.set_adapters({"one": 1.0})
    with_one = rt.chat(HELLO, config)
    assert with_one.text != base
    assert with_one.adapters == {"one": 1.0}
    rt.set_adapters({"two": 1.0})
    assert rt.chat(HELLO, config).text not in (base, with_one.text)
    rt.set_adapters({"one": 1.0, "two": 0.5})  # several at once, each with a scale
    assert rt.active_adapters == {"one": 1.0, "two": 0.5}
    rt.set_adapters({})
    assert rt.chat(HELLO, config).text == base  # the base model is back, bit for bit
    rt.set_adapters({"one": 1.0})
    assert rt.chat(HELLO, config).text == with_one.text  # and the KV cache held nothing stale


def test_adapter_errors(fresh_runtime: Runtime, tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="not loaded"):
        fresh_runtime.set_adapters({"ghost": 1.0})
    with pytest.raises(AdapterError, match="not found"):
        fresh_runtime.load_adapter("missing", tmp_path / "missing.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(AdapterError, match="could not load"):
        fresh_runtime.load_adapter("junk", junk)
    assert fresh_runtime.adapters == []


def test_options_are_scored_by_likelihood(runtime: Runtime) -> None:
    messages = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]
    prompt = runtime.chat_prompt(messages)
    before = runtime.chat(messages, GenerationConfig(max_tokens=8)).text
    scores = runtime.score_options(prompt, ["Paris", "London", "a banana"])
    assert scores[0] == max(scores) and all(s < 0 for s in scores)
    assert runtime.score_options(prompt, ["Paris", "London", "a banana"]) == scores  # no state leaks between calls
    assert runtime.chat(messages, GenerationConfig(max_tokens=8)).text == before  # nor into generation


# -- the kept prefix: the system turn's KV state survives requests, adapter switches and scoring -------------
def test_chat_prefix_is_where_the_next_user_turn_begins(runtime: Runtime) -> None:
    system = [{"role": "system", "content": "You help Kari. Her cat is Pixel."}]
    prefix = runtime.chat_prefix(system)
    whole = runtime.chat_prompt([*system, {"role": "user", "content": "What is my cat called?"}])
    assert whole.startswith(prefix) and "Pixel" in prefix and "What is my cat" not in prefix
    assert prefix.endswith(whole[len(prefix) - 5:len(prefix)])


def test_a_kept_prefix_changes_no_answer_and_survives_switches(fresh_runtime: Runtime,
                                                               random_lora: Callable[..., Path]) -> None:
    rt = fresh_runtime
    system = [{"role": "system", "content": "You are a helpful assistant. The user is Kari; her cat is Pixel, her "
                                            "boat is Seabird and she lives in Tromso."}]
    prefix = rt.chat_prefix(system)
    questions = ["What is my cat called?", "Where do I live?", "What is my boat called?"]
    config = GenerationConfig(max_tokens=12)

    def answers(cached: bool) -> list[str]:
        out = []
        for q in questions:
            prompt = rt.chat_prompt([*system, {"role": "user", "content": q}])
            rt.llm.reset()  # each from an empty cache unless the kept prefix is used
            out.append("".join(p.text for p in rt.stream(prompt, config, cached_prefix=prefix if cached else "")))
        return out

    plain = answers(cached=False)
    hits = rt.prefix_hits
    assert answers(cached=True) == plain  # the first builds the state, the next two restore it
    assert rt.prefix_hits == hits + 2
    rt.load_adapter("one", random_lora(seed=1))
    rt.set_adapters({"one": 1.0})  # clears the KV cache; the base model's saved state must not be used for it
    with_adapter = answers(cached=False)
    assert with_adapter != plain and answers(cached=True) == with_adapter
    rt.set_adapters({})
    rt.score_options(rt.chat_prompt(system), ["yes", "no"])  # scoring resets the cache too
    before = rt.prefix_hits
    assert answers(cached=True) == plain and rt.prefix_hits == before + 3  # every one from the saved state


def test_a_json_list_cut_off_by_its_token_budget_keeps_its_complete_items() -> None:
    assert json_list_items('["a", "b"]') == ["a", "b"]
    assert json_list_items('[{"question": "q1?", "answer": "a1"}, {"question": "q2?", "ans') == [
        {"question": "q1?", "answer": "a1"}]
    assert json_list_items('["only half') == []
    assert json_list_items('{"a": 1}') is None and json_list_items("no JSON at all") is None


# -- two models as one: a Q8_0 copy computes the prompt, the packaged Q4_1 file decodes ------------------------
def test_the_prefill_copy_fills_the_cache_the_packaged_model_answers_from(
        runtime: Runtime, random_lora: Callable[..., Path]) -> None:
    import numpy as np

    from pllm.config import Settings
    from pllm.lm.models import gguf_file_type, runtime_model
    from pllm.lm.runtime import hand_over

    served = runtime_model(Settings(model_format="packaged+Q8_0"))
    assert served.path == runtime.model.path and served.prefill is not None
    assert gguf_file_type(served.path) == 3 and gguf_file_type(served.prefill) == 7  # Q4_1 decodes, Q8_0 prefills
    notes = " ".join(f"Note {n}: Kari fed the cat Pixel at {n} o'clock and sailed Seabird past buoy {n * 7}."
                     for n in range(12))
    messages = [{"role": "system", "content": f"You help Kari. {notes}"},
                {"role": "user", "content": "What is my cat called?"}]
    prompt = runtime.chat_prompt(messages)
    tokens = runtime.tokenize(prompt)
    both = Runtime(served, n_ctx=1024, threads=2)
    try:
        alone = runtime.next_token_logits(prompt)  # the packaged file computing its own prompt
        assert hand_over(both.prefiller, both.llm, tokens[:-1])
        assert both.llm.n_tokens == len(tokens) - 1 and both.prefiller.n_tokens == len(tokens) - 1
        both.llm.eval(tokens[-1:])  # the decoder reads the copy's cache for everything before its last token
        handed = both._last_logits()
        both.llm.reset()
        both.llm._ctx.kv_cache_clear()
        both.llm.eval(tokens[-1:])  # the same last token with nothing before it
        blind = both._last_logits()
        assert np.corrcoef(handed, alone)[0, 1] > 0.95 > np.corrcoef(blind, alone)[0, 1]
        assert int(np.argmax(handed)) == int(np.argmax(alone))
        config = GenerationConfig(max_tokens=12)
        stats = StreamStats()
        answer = "".join(p.text for p in both.stream(prompt, config, stats))
        assert answer.strip() and stats.prompt_tokens == len(tokens)
        assert both.prefiller.n_tokens == len(tokens) - 1  # the prompt was the copy's work, the answer the decoder's
        assert both.llm.n_tokens >= len(tokens) + stats.tokens - 1
        # the next turn of the chat: the decoder holds the answer, so its few new tokens are not handed over
        follow = both.chat_prompt([*messages, {"role": "assistant", "content": answer},
                                   {"role": "user", "content": "And my boat?"}])
        assert "".join(p.text for p in both.stream(follow, config)).strip()
        assert both.prefiller.n_tokens == len(tokens) - 1  # the copy did not recompute the answer
        scores = both.score_options(prompt, [" Pixel", " Seabird"])  # the gate's scores read the same way
        assert np.allclose(scores, runtime.score_options(prompt, [" Pixel", " Seabird"]), atol=0.5)
        both.load_adapter("one", random_lora(seed=1))  # an adapter is on both: the prompt is computed under it
        both.set_adapters({"one": 1.0})
        assert list(both._prefill_adapters) == ["one"]
        assert "".join(p.text for p in both.stream(prompt, config)) != answer
        both.set_adapters({})
        assert "".join(p.text for p in both.stream(prompt, config)) == answer
    finally:
        both.close()
