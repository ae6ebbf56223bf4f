"""The P-tier assistant: turns the user's message (and the conversation so far) into an answer.

    from pllm.personal.assistant import Assistant
    Assistant(runtime).answer("Say hello.").text
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pllm.lm.runtime import Completion, GenerationConfig, Message, Piece, Runtime, StreamStats

SYSTEM_PROMPT = "You are a helpful personal assistant. Answer briefly and accurately."


@dataclass
class Turn:
    """One exchange of a conversation."""

    user: str
    assistant: str


@dataclass
class Assistant:
    """Builds the prompt for one request and runs it on the device's runtime."""

    runtime: Runtime
    system_prompt: str = SYSTEM_PROMPT
    history: list[Turn] = field(default_factory=list)

    def messages(self, prompt: str) -> list[Message]:
        messages: list[Message] = [{"role": "system", "content": self.system_prompt}]
        for turn in self.history:
            messages += [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.assistant}]
        messages.append({"role": "user", "content": prompt})
        return messages

    def answer(self, prompt: str, config: GenerationConfig | None = None) -> Completion:
        completion = self.runtime.chat(self.messages(prompt), config)
        self.history.append(Turn(prompt, completion.text))
        return completion

    def stream(self, prompt: str, config: GenerationConfig | None = None, stats: StreamStats | None = None
               ) -> Iterator[Piece]:
        """Stream the answer; the turn joins the history once the stream is exhausted."""
        pieces: list[str] = []
        for piece in self.runtime.stream(self.runtime.chat_prompt(self.messages(prompt)), config, stats):
            pieces.append(piece.text)
            yield piece
        self.history.append(Turn(prompt, "".join(pieces)))

    def trim_history(self, keep: int) -> None:
        """Keep only the last `keep` turns (the context window is small)."""
        del self.history[: max(0, len(self.history) - keep)]

    def reset(self) -> None:
        self.history.clear()


def answer_record(completion: Completion) -> dict[str, object]:
    """The JSON shape of one answer, as `pllm ask --json` prints it."""
    adapters = completion.adapters
    return {
        "text": completion.text,
        "tokens": completion.tokens,
        "seconds": round(completion.seconds, 4),
        "tokens_per_second": round(completion.tokens_per_second, 2),
        "adapter": ",".join(adapters) if adapters else None,
    }

