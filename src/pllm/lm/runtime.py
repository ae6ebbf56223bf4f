"""The llama.cpp runtime every tier shares: one loaded GGUF model, its chat template, streamed tokens, LoRA adapters.

    from pllm.lm.runtime import Runtime, GenerationConfig
    rt = Runtime.from_settings(settings)
    for piece in rt.stream(rt.chat_prompt([{"role": "user", "content": "Hi"}]), GenerationConfig()):
        print(piece.text, end="")

Adapters go through llama.cpp's low-level API (`llama_adapter_lora_init` + `llama_set_adapters_lora`) so the model
stays memory-mapped, several adapters apply at once with a scale each, and switching costs about a millisecond.
A runtime is not thread-safe: callers that share one (the API server) hold a lock around it.

Time to first token is mostly prompt processing (~100-250 tokens/s on 2 cores), so the runtime keeps the KV state of
a prompt's fixed beginning (`stream(..., cached_prefix=...)`: the system turn with the user's profile) per adapter
set, and a request that starts the same way only processes what follows it. A changed adapter set or a scoring call
no longer costs the prefix: its saved state is copied back (a few MB, about a millisecond).
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pllm.config import Settings, default
from pllm.errors import AdapterError, ModelLoadError, PromptTooLongError
from pllm.lm.export import memory_file
from pllm.lm.grammar import schema_grammar
from pllm.lm.models import ModelFile, runtime_model

if TYPE_CHECKING:
    from llama_cpp import Llama

Message = dict[str, str]
# Set once, when a serving process is shutting down: every answer being generated ends at its next token.
stop_generating = threading.Event()
PREFIX_STATES_KEPT = 4  # saved prefix KV states (one per adapter set in use, a few MB each)
# A prompt is computed on the model's prefill copy (ModelFile.prefill) only when at least this many of its tokens are
# not already in the decoding model's KV cache: below it, handing the cache over costs more than it saves.
HANDOVER_MIN_TOKENS = 32
PREFILL_SPEEDUP = 1.5  # the Q8_0 copy computes prompts 1.6-1.8x as fast as Q4_1 (docs/BENCHMARKS.md, both CPUs)


def load_llama(path: Path, *, extra_buffers: bool = False, **kwargs: Any) -> Llama:
    """A `llama_cpp.Llama` on plain CPU weight buffers unless `extra_buffers`: pllm's runtime and the bench's raw
    engine load through here.

    llama.cpp otherwise repacks weights into "extra" buffer types, AMX on Intel CPUs that have it; its AMX matmul
    segfaults on some of those machines (llama.cpp issue 20824, open; seen on ours for every prompt), and LoRA
    adapters cannot use those buffers anyway (llama.cpp logs "cannot use buft 'AMX', fallback to CPU"). Where the
    CPU has no AMX, the repacked layouts of some formats are faster; `pllm bench --formats` measures them and only
    its choice turns them on. `Llama` has no argument for it, so the default model params are amended while it
    loads.
    """
    import llama_cpp.llama_cpp as C
    from llama_cpp import Llama

    defaults = C.llama_model_default_params

    def chosen_buffers() -> Any:
        params = defaults()
        params.use_extra_bufts = extra_buffers
        return params

    C.llama_model_default_params = chosen_buffers
    try:
        return Llama(model_path=str(path), **kwargs)
    finally:
        C.llama_model_default_params = defaults


def common_prefix(llm: Llama, tokens: Sequence[int]) -> int:
    """How many of `tokens`, from the start, `llm`'s KV cache already holds."""
    n, limit = 0, min(llm.n_tokens, len(tokens))
    while n < limit and llm.input_ids[n] == tokens[n]:
        n += 1
    return n


def kv_state(llm: Llama) -> bytes:
    """The KV cache of `llm`'s sequence 0, as llama.cpp serialises it (b"" where it could not)."""
    from llama_cpp import llama_cpp as C

    ctx = llm._ctx.ctx
    size = C.llama_state_seq_get_size(ctx, 0)
    buffer = (ctypes.c_uint8 * size)()
    written = C.llama_state_seq_get_data(ctx, buffer, size, 0)
    return bytes(buffer[:written])


def load_kv_state(llm: Llama, state: bytes, tokens: Sequence[int]) -> bool:
    """Replace `llm`'s KV cache with `state`, which holds `tokens`: afterwards `generate` or `eval` processes only
    what follows them. False, and the cache empty, where llama.cpp refused the state."""
    from llama_cpp import llama_cpp as C

    llm.reset()
    llm._ctx.kv_cache_clear()
    buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
    if not state or C.llama_state_seq_set_data(llm._ctx.ctx, buffer, len(state), 0) != len(state):
        llm._ctx.kv_cache_clear()  # a state that did not fit may have left part of itself behind
        return False
    llm.input_ids[:len(tokens)] = tokens
    llm.n_tokens = len(tokens)
    llm._requires_eval = True  # its logits are not the last token's: what follows is evaluated afresh
    return True


def hand_over(prefiller: Llama, decoder: Llama, tokens: Sequence[int]) -> bool:
    """Compute `tokens` on `prefiller` (a faster-prefilling copy of the same model: Q8_0 has a batched kernel that
    Q4_1 lacks) and move the KV cache into `decoder`, which then decodes at its own speed: after this,
    `decoder.generate(tokens + more)` or `decoder.eval(more)` processes only what follows. The cache's keys and
    values are laid out by the architecture, not by the weights' format, so a copy of the same model can fill it.
    False (and `decoder` empty) where llama.cpp refused the state."""
    done = common_prefix(prefiller, tokens)
    prefiller.n_tokens = done
    prefiller._ctx.kv_cache_seq_rm(-1, done, -1)  # a longer cached tail must not travel with the prompt
    if done < len(tokens):
        prefiller.eval(list(tokens[done:]))
    return load_kv_state(decoder, kv_state(prefiller), tokens)


def raw_llama(path: Path, settings: Settings, *, n_ctx: int | None = None, extra_buffers: bool = False) -> Llama:
    """A raw `Llama` with the threads, context and seed pllm's runtime gets: the benches' reference engine."""
    return load_llama(path, extra_buffers=extra_buffers, n_ctx=n_ctx or settings.n_ctx, n_threads=settings.threads,
                      n_threads_batch=settings.threads, seed=settings.seed, verbose=False)


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode one answer."""

    max_tokens: int = default("max_tokens")  # cap on generated tokens
    temperature: float = default("temperature")  # 0 = greedy
    top_p: float = default("top_p")  # nucleus mass when sampling
    top_k: int = 40  # candidates considered when sampling
    seed: int = default("seed")  # sampling seed
    stop: tuple[str, ...] = ()  # extra stop strings (the template's own are added)
    frequency_penalty: float = 0.0  # OpenAI's: a token's logit lowered by this times its count in the recent text
    presence_penalty: float = 0.0  # and by this once it appears there (llama.cpp counts the last 64 tokens)
    json_schema: str = ""  # a JSON Schema (as JSON text) the answer must match: decoding follows its grammar

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> GenerationConfig:
        base: dict[str, Any] = {
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "seed": settings.seed,
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


@dataclass(frozen=True)
class Piece:
    """One streamed piece of text (one token, or several when a multi-byte character spans tokens)."""

    text: str
    token: int


@dataclass
class StreamStats:
    """Filled in while a stream runs; read it once the stream is exhausted."""

    prompt_tokens: int = 0
    tokens: int = 0
    started_at: float = field(default_factory=time.perf_counter)
    first_token_at: float = 0.0
    ended_at: float = 0.0
    finish_reason: str = "length"

    @property
    def seconds(self) -> float:
        return self.ended_at - self.started_at

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Usage:
    """Token counts of one answer, filled in while it streams."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def take(self, stats: StreamStats) -> None:
        """The counts of an answer the runtime has streamed to its end."""
        self.prompt_tokens, self.completion_tokens, self.finish_reason = (
            stats.prompt_tokens, stats.tokens, stats.finish_reason)

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


@dataclass
class Completion:
    """A finished answer and how long it took."""

    text: str
    tokens: int  # generated tokens
    prompt_tokens: int
    seconds: float  # wall time from the call to the last token, prompt included
    first_token_seconds: float  # time to first token
    finish_reason: str  # "stop" (end of turn or stop string) or "length"
    adapters: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_stats(cls, text: str, stats: StreamStats, adapters: dict[str, float]) -> Completion:
        first = (stats.first_token_at if stats.tokens else stats.ended_at) - stats.started_at
        return cls(text=text, tokens=stats.tokens, prompt_tokens=stats.prompt_tokens, seconds=stats.seconds,
                   first_token_seconds=first, finish_reason=stats.finish_reason, adapters=dict(adapters))

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def decode_tokens_per_second(self) -> float:
        """Generation speed after the first token (prompt processing excluded)."""
        span = self.seconds - self.first_token_seconds
        return (self.tokens - 1) / span if self.tokens > 1 and span > 0 else 0.0


class Runtime:
    """One loaded GGUF model with its tokenizer, chat template and LoRA adapters; where the served model names a
    prefill copy (`pllm bench --formats` chose "prompts on Q8_0, decode on the packaged file"), that copy too, which
    computes long prompts and hands their KV cache to the model that decodes."""

    def __init__(self, model: ModelFile, *, n_ctx: int = default("n_ctx"), threads: int = 2,
                 seed: int = default("seed")) -> None:
        self.model = model
        started = time.perf_counter()
        try:
            self.llm: Llama = load_llama(
                model.path,
                extra_buffers=model.repacked,
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                seed=seed,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"llama.cpp could not load {model.path}: {exc}") from None
        self.prefiller: Llama | None = None
        self._handed_over = False  # the decoder's cache holds cells the copy computed (last_hidden_state skips them)
        if model.prefill is not None:
            try:
                self.prefiller = load_llama(model.prefill, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                                            seed=seed, verbose=False)
            except (ValueError, RuntimeError) as exc:
                self.llm.close()
                raise ModelLoadError(f"llama.cpp could not load {model.prefill}: {exc}") from None
        self.load_seconds = time.perf_counter() - started
        self.n_ctx = self.llm.n_ctx()
        self._vocab = self.llm._model.vocab
        # name -> llama_adapter_lora_p for the decoding model, and for the prefill copy where there is one
        self._adapters: dict[str, Any] = {}
        self._prefill_adapters: dict[str, Any] = {}
        self._active: dict[str, float] = {}
        self._folded: dict[str, float] = {}  # adapters merged into the weights (a per-user copy)
        self._template = self._chat_formatter()
        # (adapter set, prefix tokens) -> that prefix's KV cells, newest use last
        self._prefix_states: OrderedDict[tuple[tuple[tuple[str, float], ...], tuple[int, ...]], bytes] = OrderedDict()
        self.prefix_hits = 0  # requests whose prefix came from the cache or was still in the KV cache

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        return cls(runtime_model(settings), n_ctx=settings.n_ctx, threads=settings.threads, seed=settings.seed)

    @classmethod
    def from_gguf_bytes(cls, name: str, data: bytes, settings: Settings, *, folded: dict[str, float] | None = None,
                        repacked: bool = False) -> Runtime:
        """A model that exists only in memory (a decrypted per-user merge), loaded through an in-memory file.
        `folded`: the adapters merged into its weights, reported as active (answers are logged under them);
        `repacked`: on the buffers its base was chosen to run on."""
        with memory_file(data) as path:  # llama.cpp maps it; the mapping outlives the file descriptor
            runtime = cls(ModelFile(name=name, path=path, source="memory", repacked=repacked), n_ctx=settings.n_ctx,
                          threads=settings.threads, seed=settings.seed)
        runtime._folded = dict(folded or {})
        return runtime

    # -- prompts ---------------------------------------------------------------------------------------------
    def _chat_formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            return None

        def token_text(token_id: int) -> str:
            return self.llm._model.token_get_text(token_id) if token_id >= 0 else ""

        return Jinja2ChatFormatter(
            template=template,
            eos_token=token_text(self.llm.token_eos()),
            bos_token=token_text(self.llm.token_bos()),
        )

    @property
    def has_chat_template(self) -> bool:
        return self._template is not None

    def chat_prompt(self, messages: Sequence[Message]) -> str:
        """Render messages with the model's own chat template, ready for the assistant's turn."""
        if self._template is None:
            # A base model (no template): a plain transcript it can continue.
            lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
            return "\n".join([*lines, "Assistant:"])
        return self._template(messages=list(messages)).prompt

    def chat_prefix(self, messages: Sequence[Message]) -> str:
        """The text every rendering of `messages` followed by more turns starts with (for `cached_prefix`).

        Found by rendering two different next user turns and keeping what they share, so it works for any template.
        """
        first = self.chat_prompt([*messages, {"role": "user", "content": "\x01"}])
        second = self.chat_prompt([*messages, {"role": "user", "content": "\x02"}])
        shared = next((i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b), len(first))
        return first[:shared]

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.llm.detokenize(list(tokens)).decode("utf-8", errors="replace")

    def is_end_of_turn(self, token: int) -> bool:
        from llama_cpp import llama_cpp as C

        return bool(C.llama_vocab_is_eog(self._vocab, token))

    # -- generation ------------------------------------------------------------------------------------------
    def _prompt_tokens(self, prompt: str, max_tokens: int) -> tuple[list[int], int]:
        tokens = self.tokenize(prompt)
        if not tokens:  # an empty prompt on a model that adds no BOS: start from its document boundary
            bos = self.llm.token_bos()
            tokens = [bos if bos >= 0 else self.llm.token_eos()]
        room = self.n_ctx - len(tokens)
        if room < 1:
            raise PromptTooLongError(
                f"the prompt is {len(tokens)} tokens but the context holds {self.n_ctx}: "
                "shorten it or raise PLLM_N_CTX"
            )
        return tokens, min(max_tokens, room)

    def _prefix_key(self, prefix: list[int]) -> tuple[tuple[tuple[str, float], ...], tuple[int, ...]]:
        return tuple(sorted(self._active.items())), tuple(prefix)

    def _warm_prefix(self, tokens: list[int], prefix_text: str) -> None:
        """Leave the KV cache holding `prefix_text`'s tokens when `tokens` starts with them: kept from the last
        request, copied back from a saved state, or processed once and saved. `generate` then reuses them."""
        prefix = self.tokenize(prefix_text)
        n = len(prefix)
        if n < 2 or n >= len(tokens) or tokens[:n] != prefix:
            return  # no prefix, or the template's tokens merge across its end: nothing reusable
        llm = self.prompt_llm
        key = self._prefix_key(prefix)
        if llm.n_tokens >= n and list(llm.input_ids[:n]) == prefix:
            self.prefix_hits += 1
            if key not in self._prefix_states:
                self._save_prefix(key, n)
            return
        saved = self._prefix_states.pop(key, None)
        if saved is not None and load_kv_state(llm, saved, prefix):
            self._prefix_states[key] = saved  # back in, as the most recently used
            self.prefix_hits += 1
            return
        llm.reset()
        llm._ctx.kv_cache_clear()
        llm.eval(prefix)
        self._save_prefix(key, n)

    def _save_prefix(self, key: tuple[tuple[tuple[str, float], ...], tuple[int, ...]], n: int) -> None:
        if self.prompt_llm.n_tokens != n:  # the cache holds more than the prefix (the last answer): the prefix only
            return
        self._prefix_states[key] = kv_state(self.prompt_llm)
        while len(self._prefix_states) > PREFIX_STATES_KEPT:
            self._prefix_states.popitem(last=False)

    @property
    def prompt_llm(self) -> Llama:
        """The model that computes prompts: the prefill copy where there is one (its KV cache holds the saved
        prefixes), else the model itself."""
        return self.prefiller if self.prefiller is not None else self.llm

    def _prefill(self, tokens: list[int]) -> None:
        """With a prefill copy: leave the decoding model's KV cache holding all of `tokens` but the last (whose
        logits the decoder computes itself), computed on the copy, unless most of them are in the cache already."""
        if self.prefiller is None:
            return
        ahead = tokens[:-1]
        decoder_work = len(ahead) - common_prefix(self.llm, ahead)
        copy_work = len(ahead) - common_prefix(self.prefiller, ahead)
        # A chat's next turn: the decoder holds the last answer, the copy only the prompt before it. Hand over only
        # where the copy computes no more than PREFILL_SPEEDUP times what the decoder would.
        if decoder_work < HANDOVER_MIN_TOKENS or copy_work > PREFILL_SPEEDUP * decoder_work:
            return
        self._handed_over = True
        if not hand_over(self.prefiller, self.llm, ahead):
            self.llm.reset()  # the decoder computes the prompt itself

    def reset(self) -> None:
        """Forget what the KV caches hold (the saved prefix states stay): the next prompt is computed whole."""
        for llm in (self.llm, self.prefiller):
            if llm is not None:
                llm.reset()

    def _forget_prefixes(self, adapter: str) -> None:
        for key in [k for k in self._prefix_states if any(name == adapter for name, _ in k[0])]:
            del self._prefix_states[key]

    def stream(self, prompt: str, config: GenerationConfig | None = None, stats: StreamStats | None = None,
               *, cached_prefix: str = "") -> Iterator[Piece]:
        """Yield the answer to `prompt` piece by piece; stops at end of turn, a stop string or max_tokens.

        Pass a StreamStats to read token counts and timings once the stream is exhausted. `cached_prefix`, the text
        `prompt` starts with that later requests will share (`chat_prefix`), has its KV state kept across requests.
        """
        config = config or GenerationConfig()
        stats = stats if stats is not None else StreamStats()
        stats.started_at = time.perf_counter()
        tokens, budget = self._prompt_tokens(prompt, config.max_tokens)
        stats.prompt_tokens = len(tokens)
        if cached_prefix:
            self._warm_prefix(tokens, cached_prefix)
        self._prefill(tokens)
        stops = tuple(s for s in config.stop if s)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""  # text held back while it could still be the start of a stop string
        if config.temperature > 0:
            self.llm.set_seed(config.seed)
        generator = self.llm.generate(
            tokens,
            temp=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k if config.temperature > 0 else 1,
            min_p=0.0,
            repeat_penalty=1.0,
            frequency_penalty=config.frequency_penalty,
            presence_penalty=config.presence_penalty,
            grammar=schema_grammar(config.json_schema) if config.json_schema else None,
        )
        for token in generator:
            if stop_generating.is_set():  # the process is shutting down: end the answer here
                stats.finish_reason = "length"
                break
            if self.is_end_of_turn(token):
                stats.finish_reason = "stop"
                break
            stats.tokens += 1
            if stats.tokens == 1:
                stats.first_token_at = time.perf_counter()
            pending += decoder.decode(self.llm.detokenize([token], prev_tokens=None))
            if stops:
                cut = _first_stop(pending, stops)
                if cut is not None:
                    if pending[:cut]:
                        yield Piece(pending[:cut], token)
                    pending = ""
                    stats.finish_reason = "stop"
                    break
                keep = _stop_prefix_len(pending, stops)
                ready, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
            else:
                ready, pending = pending, ""
            if ready:
                yield Piece(ready, token)
            if stats.tokens >= budget:
                break
        generator.close()
        tail = pending + decoder.decode(b"", final=True)
        if tail:
            yield Piece(tail, -1)
        stats.ended_at = time.perf_counter()

    def complete(self, prompt: str, config: GenerationConfig | None = None) -> Completion:
        """Generate the whole answer and time it."""
        stats = StreamStats()
        text = "".join(p.text for p in self.stream(prompt, config, stats))
        return Completion.from_stats(text, stats, self.active_adapters)

    def chat(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> Completion:
        return self.complete(self.chat_prompt(messages), config)

    # -- scoring ---------------------------------------------------------------------------------------------
    def option_tokens(self, prompt_tokens: list[int], prompt: str, option: str) -> list[int]:
        """The tokens `option` adds after `prompt`, as the model would see them in context."""
        joint = self.tokenize(prompt + option)
        if joint[: len(prompt_tokens)] == prompt_tokens and len(joint) > len(prompt_tokens):
            return joint[len(prompt_tokens):]
        return self.tokenize(option, add_bos=False)

    def _last_logits(self) -> Any:
        import numpy as np

        return np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),)).copy()

    def next_token_logits(self, prompt: str) -> Any:
        """Raw logits of the token after `prompt` (a float32 vector over the vocabulary)."""
        tokens, _ = self._prompt_tokens(prompt, 1)
        self.llm.reset()
        self.llm.eval(tokens)
        logits = self._last_logits()
        self.llm.reset()
        return logits

    def last_hidden_state(self, prompt: str) -> Any:
        """The model's final hidden state (after the output norm) at the last token of `prompt`, under the adapters
        as they are set: the features a classification head reads (lm/head.py)."""
        import numpy as np
        from llama_cpp import llama_cpp as C

        tokens, _ = self._prompt_tokens(prompt, 0)
        llm, ctx = self.llm, self.llm._ctx.ctx
        # Prompts of one task share their beginning (the system turn, the instruction): what the KV cache holds of it
        # from the last call is kept, and only the rest is processed (eval drops the cells after it).
        # (not cells the prefill copy computed: a text's features must not depend on what was asked before it)
        common = 0 if self._handed_over else common_prefix(llm, tokens[:-1])
        self._handed_over = False
        llm.n_tokens = common
        try:
            if common < len(tokens) - 1:
                llm.eval(tokens[common:-1])  # without embeddings: they would be computed for every token
            C.llama_set_embeddings(ctx, True)
            llm.eval(tokens[-1:])
            state = np.ctypeslib.as_array(C.llama_get_embeddings_ith(ctx, -1), shape=(llm.n_embd(),)).copy()
        except BaseException:
            llm.reset()
            raise
        finally:
            C.llama_set_embeddings(ctx, False)
        return state

    def score_options(self, prompt: str, options: Sequence[str]) -> list[float]:
        """Log-probability of each option as the continuation of `prompt` (summed over its tokens).

        The prompt is evaluated once; each option is then decoded in one batch from that cached prefix, with
        logits at every position, and the cache is rewound between options. Used to choose among labels instead of
        asking a small model to write one, and by the adaptation gate to score held-out texts.
        """
        import numpy as np

        tokens, _ = self._prompt_tokens(prompt, 1)
        self.llm.reset()
        self._prefill(tokens)
        self.llm.eval(tokens[self.llm.n_tokens:])
        base = self.llm.n_tokens
        first = _log_softmax(self._last_logits())
        scores = []
        for option in options:
            ids = self.option_tokens(tokens, prompt, option)
            if base + len(ids) > self.n_ctx:
                raise PromptTooLongError(f"prompt and option exceed the context of {self.n_ctx} tokens")
            total = float(first[ids[0]])
            for start in range(0, len(ids) - 1, self.llm.n_batch):  # positions 0..n-2 predict tokens 1..n-1
                chunk = ids[start:min(len(ids) - 1, start + self.llm.n_batch)]
                self.llm._ctx.kv_cache_seq_rm(-1, base + start, -1)
                self.llm._batch.set_batch(batch=chunk, n_past=base + start, logits_all=True)
                self.llm._ctx.decode(self.llm._batch)
                rows = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(len(chunk), self.llm.n_vocab()))
                for j, row in enumerate(rows):
                    total += float(_log_softmax(row)[ids[start + j + 1]])
            scores.append(total)
            self.llm.n_tokens = base  # the next eval drops the option's cache entries from here on
        # The cached logits are an option's, not the prompt's: make the next generation evaluate afresh.
        self.llm.reset()
        return scores

    def answer_logprob(self, messages: Sequence[Message], answer: str) -> tuple[float, int]:
        """(summed log-probability, token count) of `answer` as the assistant's reply to `messages`, under the
        adapters as they are set: the held-out score of the adaptation gate and of an expert's exam."""
        prompt = self.chat_prompt(messages)
        logprob = self.score_options(prompt, [answer])[0]
        return logprob, len(self.option_tokens(self.tokenize(prompt), prompt, answer))

    # -- adapters --------------------------------------------------------------------------------------------
    def load_adapter(self, name: str, source: Path | bytes) -> None:
        """Load a GGUF LoRA adapter under `name` from a file or from bytes (never written to disk).

        Bytes go through an anonymous in-memory file (memfd), so a decrypted adapter never touches the disk.
        """
        from llama_cpp import llama_cpp as C

        if name in self._adapters:
            self.unload_adapter(name)
        with _adapter_path(source) as path:
            handle = C.llama_adapter_lora_init(self.llm._model.model, str(path).encode())
            if not handle:
                raise AdapterError(f"llama.cpp could not load the LoRA adapter {name!r}: not a LoRA for this model")
            self._adapters[name] = handle
            if self.prefiller is not None:  # the prompt's keys and values are computed under the adapter too
                prefill_handle = C.llama_adapter_lora_init(self.prefiller._model.model, str(path).encode())
                if not prefill_handle:
                    self.unload_adapter(name)
                    raise AdapterError(f"llama.cpp could not load the LoRA adapter {name!r} on the prefill copy")
                self._prefill_adapters[name] = prefill_handle

    def unload_adapter(self, name: str) -> None:
        from llama_cpp import llama_cpp as C

        handle = self._adapters.pop(name, None)
        if handle is None:
            return
        if name in self._active:
            self.set_adapters({k: v for k, v in self._active.items() if k != name})
        self._forget_prefixes(name)
        C.llama_adapter_lora_free(handle)
        prefill_handle = self._prefill_adapters.pop(name, None)
        if prefill_handle is not None:
            C.llama_adapter_lora_free(prefill_handle)

    @contextlib.contextmanager
    def trying_adapter(self, source: Path | bytes, name: str = "candidate") -> Iterator[str]:
        """Load an adapter to judge it (apply it with `set_adapters({name: 1.0})`); afterwards the runtime is back
        on the base model with the adapter unloaded, whatever happened."""
        self.load_adapter(name, source)
        try:
            yield name
        finally:
            self.set_adapters({})
            self.unload_adapter(name)

    @property
    def adapters(self) -> list[str]:
        return list(self._adapters)

    @property
    def active_adapters(self) -> dict[str, float]:
        """The adapters the answers are made with: folded into the weights, then applied."""
        return {**self._folded, **self._active}

    def set_adapters(self, scales: dict[str, float]) -> None:
        """Apply exactly these loaded adapters with these scales ({} = the base model), then clear the KV cache."""
        from llama_cpp import llama_cpp as C

        unknown = sorted(set(scales) - set(self._adapters))
        if unknown:
            raise AdapterError(f"adapter not loaded: {', '.join(unknown)}")
        names = list(scales)
        values = (ctypes.c_float * max(1, len(names)))(*[float(scales[n]) for n in names])
        models = [(self.llm, self._adapters)]
        if self.prefiller is not None:
            models.append((self.prefiller, self._prefill_adapters))
        refused = False
        for llm, loaded in models:
            handles = (C.llama_adapter_lora_p_ctypes * max(1, len(names)))(*[loaded[n] for n in names])
            refused = refused or bool(C.llama_set_adapters_lora(llm._ctx.ctx, handles if names else None,
                                                                len(names), values if names else None))
        # Cached keys/values were computed under the old weights: drop them.
        for llm, _ in models:
            llm.reset()
            llm._ctx.kv_cache_clear()
        if refused:  # neither model keeps a set the other lacks
            for llm, _ in models:
                C.llama_set_adapters_lora(llm._ctx.ctx, None, 0, None)
            self._active = {}
            raise AdapterError("llama.cpp refused to apply the adapters")
        self._active = dict(scales)

    def close(self) -> None:
        for name in list(self._adapters):
            self.unload_adapter(name)
        self.llm.close()
        if self.prefiller is not None:
            self.prefiller.close()


def json_list_items(text: str) -> list[Any] | None:
    """The items of an answer that is a JSON list; where decoding stopped mid-list (its token budget ran out) the
    items complete before that, so one long item costs only itself. None when the answer is no JSON list."""
    text = text.strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        if not text.startswith("["):
            return None
    else:
        return value if isinstance(value, list) else None
    decoder, position = json.JSONDecoder(), 1
    items: list[Any] = []
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        try:
            item, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return items
        items.append(item)


def _log_softmax(logits: Any) -> Any:
    import numpy as np

    shifted = logits.astype(np.float64) - float(logits.max())
    return shifted - np.log(np.exp(shifted).sum())


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _stop_prefix_len(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of `text` that is the start of a stop string (held back until decided)."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


@contextlib.contextmanager
def _adapter_path(source: Path | bytes) -> Iterator[Path]:
    if isinstance(source, Path):
        if not source.is_file():
            raise AdapterError(f"adapter file not found: {source}")
        yield source
        return

    with memory_file(source) as path:
        yield path
