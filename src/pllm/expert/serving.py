"""Every registered expert as an adapter on one loaded base model (no model copy per expert), as LoRAX and vLLM
serve adapters: a request names its expert, the pool applies that adapter and answers. Requests take turns on the
one runtime, so an adapter never changes under a request in flight. Experts registered while it runs are loaded
on the next request.

    pool = ExpertPool(settings)
    for text in pool.chat_stream("cooking", messages, GenerationConfig(max_tokens=96), usage): ...
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from pllm.config import Settings
from pllm.errors import ExpertError
from pllm.expert.registry import ExpertCard, ExpertRegistry
from pllm.lm.runtime import GenerationConfig, Message, Runtime, StreamStats, Usage


class ExpertPool:
    def __init__(self, settings: Settings, registry: ExpertRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or ExpertRegistry(settings.paths.experts)
        self._runtime: Runtime | None = None
        self._loaded: tuple[tuple[str, int], ...] = ()
        self.lock = threading.Lock()

    def catalog(self) -> list[ExpertCard]:
        return self.registry.cards()

    def _ready(self, name: str) -> Runtime:
        """The runtime with every registered expert loaded (reloaded when the registry changed), `name` applied."""
        if self._runtime is None:
            self._runtime = Runtime.from_settings(self.settings)
        runtime = self._runtime
        version = self.registry.version()
        if version != self._loaded:
            runtime.set_adapters({})
            for loaded in runtime.adapters:
                runtime.unload_adapter(loaded)
            for card in self.registry.cards():
                runtime.load_adapter(card.name, self.registry.adapter_path(card.name))
            self._loaded = version
        if name not in runtime.adapters:
            self.registry.card(name)  # ExpertError naming the registered ones
            raise ExpertError(f"expert {name!r} has no adapter file")
        if runtime.active_adapters != {name: 1.0}:
            runtime.set_adapters({name: 1.0})
        return runtime

    def chat_stream(self, name: str, messages: Sequence[Message], config: GenerationConfig,
                    usage: Usage) -> Iterator[str]:
        """The expert's answer, piece by piece; `usage` is filled in once exhausted."""
        stats = StreamStats()
        with self.lock:
            runtime = self._ready(name)
            for piece in runtime.stream(runtime.chat_prompt(messages), config, stats):
                yield piece.text
        usage.take(stats)

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None
