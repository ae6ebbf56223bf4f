"""The T-model, as every tier that asks it loads it: the embedded one (Qwen2.5 1.5B Instruct by default, through its
chat template; Gemma 3 270M, a base model, few-shot) or any OpenAI-compatible upstream server (vLLM, Ollama,
llama-server, a hosted API), behind one small interface. The cloud service serves it; distillation writes with it.

    model = load_foundation(settings)            # upstream when PLLM_UPSTREAM_URL is set, else embedded
    for delta in model.chat_stream(messages, GenerationConfig(max_tokens=64), usage):
        ...

A base model has no chat template: the embedded backend writes the conversation as a few-shot transcript and stops
where the next speaker would begin. An answer can be held to a JSON schema (GenerationConfig.json_schema): a llama.cpp
grammar on the embedded model, `response_format` upstream.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Protocol

from pllm.config import Settings
from pllm.errors import CloudError, CloudUnavailableError
from pllm.lm.models import resolve_foundation_model
from pllm.lm.runtime import GenerationConfig, Message, Runtime, StreamStats, Usage
from pllm.openai_http import ApiError, OpenAIClient, Unreachable

# Shows a base model what an assistant turn looks like before the real conversation.
FEW_SHOT = """The following are conversations between a user and a helpful, accurate assistant.

User: What is the capital of France?
Assistant: The capital of France is Paris.

User: Give me two tips for sleeping better.
Assistant: Keep a regular bedtime, and avoid screens for an hour before sleep.

"""
TURN_STOPS = ("\nUser:", "\nSystem:", "\n\n\n")


class Foundation(Protocol):
    """What the cloud service needs from a T-model."""

    name: str
    instruct: bool  # follows instructions through a chat template (else a base model, prompted few-shot)

    def complete_stream(self, prompt: str, config: GenerationConfig, usage: Usage) -> Iterator[str]:
        """Continue `prompt` (raw text), piece by piece; `usage` is filled in once exhausted."""
        ...

    def chat_stream(self, messages: Sequence[Message], config: GenerationConfig, usage: Usage) -> Iterator[str]:
        """Answer the conversation as the assistant, piece by piece; `usage` is filled in once exhausted."""
        ...


def transcript(messages: Sequence[Message]) -> str:
    """A conversation as the few-shot transcript a base model continues. System messages become the preamble, not a
    turn (a small base model otherwise answers by repeating them)."""
    system = "\n".join(m["content"].strip() for m in messages if m["role"] == "system")
    lines = [FEW_SHOT, f"{system}\n\n" if system else ""]
    lines += [f"{m['role'].capitalize()}: {m['content'].strip()}\n" for m in messages if m["role"] != "system"]
    lines.append("Assistant:")
    return "".join(lines)


class EmbeddedFoundation:
    """A GGUF model in this process (llama.cpp); one request at a time (the runtime is not thread-safe)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.name = runtime.model.name
        self.instruct = runtime.has_chat_template
        self.lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedFoundation:
        return cls(Runtime(resolve_foundation_model(settings), n_ctx=settings.n_ctx, threads=settings.threads,
                           seed=settings.seed))

    def complete_stream(self, prompt: str, config: GenerationConfig, usage: Usage) -> Iterator[str]:
        stats = StreamStats()
        with self.lock:
            for piece in self.runtime.stream(prompt, config, stats):
                yield piece.text
        usage.take(stats)

    def chat_stream(self, messages: Sequence[Message], config: GenerationConfig, usage: Usage) -> Iterator[str]:
        if self.runtime.has_chat_template:
            prompt = self.runtime.chat_prompt(messages)
        else:
            prompt = transcript(messages)
            config = replace(config, stop=(*config.stop, *TURN_STOPS))
        first = True
        for text in self.complete_stream(prompt, config, usage):
            if first:  # the transcript ends with "Assistant:"; the model's space after it is not the answer's
                text, first = text.lstrip(), not text.strip()
            if text:
                yield text


class UpstreamFoundation:
    """Any OpenAI-compatible server: requests are forwarded, answers streamed back."""

    def __init__(self, url: str, model: str = "", key: str = "", timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        if self.url.endswith("/v1"):
            self.url = self.url[:-3]
        self.name = model or "upstream"
        self.instruct = True  # an OpenAI-compatible chat server
        self.client = OpenAIClient(self.url, key=key, timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Settings) -> UpstreamFoundation:
        return cls(settings.upstream_url, settings.upstream_model, settings.upstream_key, settings.cloud_timeout)

    def _stream(self, path: str, payload: dict[str, object], usage: Usage, pick: str) -> Iterator[str]:
        payload = {**payload, "stream": True, "stream_options": {"include_usage": True}}
        if self.name != "upstream":
            payload["model"] = self.name
        try:
            for chunk in self.client.stream(path, payload):
                if chunk.get("usage"):
                    usage.prompt_tokens = chunk["usage"].get("prompt_tokens", 0)
                    usage.completion_tokens = chunk["usage"].get("completion_tokens", 0)
                for choice in chunk.get("choices", []):
                    usage.finish_reason = choice.get("finish_reason") or usage.finish_reason
                    text = choice.get("delta", {}).get("content") if pick == "delta" else choice.get("text")
                    if text:
                        yield text
        except ApiError as exc:
            raise CloudError(f"the upstream model server answered {exc.status}: {exc}") from None
        except Unreachable as exc:
            raise CloudUnavailableError(f"the upstream model server {self.url} is unreachable: {exc.problem}") from None

    def complete_stream(self, prompt: str, config: GenerationConfig, usage: Usage) -> Iterator[str]:
        yield from self._stream("/v1/completions", {"prompt": prompt, **_sampling(config)}, usage, "text")

    def chat_stream(self, messages: Sequence[Message], config: GenerationConfig, usage: Usage) -> Iterator[str]:
        yield from self._stream("/v1/chat/completions", {"messages": list(messages), **_sampling(config)}, usage,
                                "delta")


def _sampling(config: GenerationConfig) -> dict[str, object]:
    out: dict[str, object] = {"max_tokens": config.max_tokens, "temperature": config.temperature,
                              "top_p": config.top_p, "seed": config.seed}
    if config.stop:
        out["stop"] = list(config.stop)
    for penalty in ("frequency_penalty", "presence_penalty"):
        if getattr(config, penalty):
            out[penalty] = getattr(config, penalty)
    if config.json_schema:
        out["response_format"] = {"type": "json_schema",
                                  "json_schema": {"name": "answer", "schema": json.loads(config.json_schema),
                                                  "strict": True}}
    return out


def load_foundation(settings: Settings) -> Foundation:
    """The upstream server when one is configured, else the embedded model. Never silently the other one."""
    if settings.upstream_url:
        return UpstreamFoundation.from_settings(settings)
    return EmbeddedFoundation.from_settings(settings)
