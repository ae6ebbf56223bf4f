"""The user's model as the device API serves it: one runtime, one request at a time, the newest promoted adapter.

    served = ServedModel(runtime, vault, settings)
    served.models()                                   # "pllm", "pllm:v0002", ..., and the base model by name
    for text in served.chat(messages, config, usage, model="pllm"):
        ...

Model names, as vLLM and LoRAX let a request pick an adapter by its `model` field:
- `pllm` (or none): personalised, as `pllm ask` answers: the profile and retrieved items in the prompt, and the
  user's active adapter. The active version is read from the vault at every request, so a version that
  `pllm adapt` (another process) promotes is served from the next request on, with no restart.
- `pllm:<version>`: the same, with that adapter version.
- the base model's name: the plain base model, nothing from the vault.

llama.cpp's context is not re-entrant: a lock is held from the first token of a request to its last, so a request
for another adapter waits and never changes the adapter under one in flight; requests get it in the order they
came. The vault's connection is shared, so the profile, feedback and forget calls take the same lock.

A personalised answer is logged in the vault as `pllm ask` logs it, under the completion id the client got back;
feedback names that id (the newest COMPLETIONS_KEPT are remembered).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pllm.errors import PllmError, UsageError
from pllm.lm import tools
from pllm.lm.embeddings import Embedder, embedding_model_dir, need_embedder
from pllm.lm.runtime import GenerationConfig, Message, Runtime, StreamStats
from pllm.lm.speech import Transcriber
from pllm.personal.adapters import AdapterStore, MergeUnsupportedError
from pllm.personal.assistant import Assistant, Turn
from pllm.personal.forget import forget_everywhere
from pllm.personal.onboarding import needs_onboarding, onboard
from pllm.personal.privacy import report_json
from pllm.personal.profile import build_profile
from pllm.personal.retrieve import RetrievalConfig

if TYPE_CHECKING:
    from pllm.config import Settings
    from pllm.lm.runtime import Usage
    from pllm.personal.forget import ForgetOutcome
    from pllm.personal.vault import Vault

log = logging.getLogger(__name__)
PERSONAL = "pllm"
COMPLETIONS_KEPT = 1000


class ModelNotServedError(UsageError):
    """The request names a model this server does not have."""

    http_status = 404


class UnknownCompletionError(PllmError):
    """Feedback names a completion this server did not log (a base-model answer, or one too old)."""

    http_status = 404


class NoVaultError(PllmError):
    """The server runs without a vault: nothing personal to show, change or forget."""

    http_status = 409


class FifoLock:
    """A lock granted in the order it was asked for. threading.Lock wakes any waiter, so under load a request
    could wait behind ones that came after it (p99 latency several times p50); here each waits for its turn.
    No thread owns it: a streamed answer's pieces may run on different worker threads."""

    def __init__(self) -> None:
        self._turns = threading.Condition()
        self._issued = 0
        self._serving = 0

    def __enter__(self) -> None:
        with self._turns:
            ticket = self._issued
            self._issued += 1
            self._turns.wait_for(lambda: self._serving == ticket)

    def __exit__(self, *_: object) -> None:
        with self._turns:
            self._serving += 1
            self._turns.notify_all()


@dataclass(frozen=True)
class ServedModelInfo:
    id: str
    kind: str  # "personal", "adapter" or "base"
    active: bool = False


class ServedModel:
    def __init__(self, runtime: Runtime, vault: Vault | None, settings: Settings, base_name: str) -> None:
        self.runtime, self.vault, self.settings, self.base_name = runtime, vault, settings, base_name
        self.lock = FifoLock()
        self._logged: OrderedDict[str, int] = OrderedDict()  # completion id -> interaction id
        self._store: AdapterStore | None = None
        self._merged: tuple[str, Runtime] | None = None  # the active version folded into a copy of the model
        self._unmergeable: set[str] = set()  # versions whose merge the model's weight type does not allow
        self._embedder: Embedder | None = None  # loaded on first use: most apps never need it
        self.embedding_lock = threading.RLock()  # the encoder is loaded once (it serves one batch at a time itself)
        self._transcriber: Transcriber | None = None  # Whisper, loaded on the first recording
        self._transcriber_lock = threading.Lock()
        if vault is not None:
            self._store = AdapterStore(vault, settings.paths.adapters)

    # -- what can be asked for -----------------------------------------------------------------------------------
    def models(self) -> list[ServedModelInfo]:
        out = [ServedModelInfo(PERSONAL, "personal")] if self.vault is not None else []
        if self._store is not None:
            with self.lock:
                active = self._store.active()
                out += [ServedModelInfo(f"{PERSONAL}:{v.version}", "adapter", v.version == active)
                        for v in self._store.versions() if v.status != "retired"]
        return [*out, ServedModelInfo(self.base_name, "base")]

    def _adapter_for(self, model: str) -> tuple[bool, str | None]:
        """(personalised, adapter version) for a model name; raises ModelNotServedError."""
        if model == self.base_name or (model == PERSONAL and self.vault is None):
            return False, None
        if model == PERSONAL:
            return True, self._store.active() if self._store is not None else None
        if model.startswith(PERSONAL + ":") and self._store is not None:
            version = model.split(":", 1)[1]
            found = [v for v in self._store.versions() if v.version == version and v.status != "retired"]
            if found:
                return True, version
        raise ModelNotServedError(f"no model {model!r} here (GET /v1/models lists them)")

    def _runtime_for(self, version: str | None) -> Runtime:
        """The runtime that answers with `version`: the active version runs folded into its per-user copy of the
        model (`merge_adapters`: decode as fast as the base), any other version applies unmerged to the base."""
        if version is None or not self.settings.merge_adapters or self._store is None \
                or version != self._store.active() or version in self._unmergeable:
            self._apply(version)
            return self.runtime
        if self._merged is None or self._merged[0] != version:
            self._close_merged()
            try:
                data = self._store.merged_model(version, self.runtime.model.path)
            except MergeUnsupportedError as exc:
                log.warning("%s; it is applied unmerged", exc)
                self._unmergeable.add(version)
                return self._runtime_for(version)
            self._merged = (version, Runtime.from_gguf_bytes(f"{self.base_name}+{version}", data, self.settings,
                                                             folded={version: 1.0},
                                                             repacked=self.runtime.model.repacked))
        return self._merged[1]

    def _close_merged(self) -> None:
        if self._merged is not None:
            self._merged[1].close()
            self._merged = None

    def _apply(self, version: str | None) -> None:
        """Make `version` (None: no adapter) the one applied, loading it from the encrypted store if needed."""
        wanted = {version: 1.0} if version else {}
        if self.runtime.active_adapters == wanted:
            return  # set_adapters clears the KV cache: only when something changes
        if version and version not in self.runtime.adapters:
            assert self._store is not None
            for loaded in self.runtime.adapters:  # one user adapter in memory at a time is enough
                self.runtime.unload_adapter(loaded)
            self.runtime.load_adapter(version, self._store.gguf(version))
        self.runtime.set_adapters(wanted)

    # -- answering -----------------------------------------------------------------------------------------------
    def chat(self, messages: Sequence[Message], config: GenerationConfig, usage: Usage,
             model: str | None = None, completion_id: str | None = None, modality: str = "text") -> Iterator[str]:
        """The answer's pieces; holds the runtime from the first piece to the last (or until the stream is closed).
        A personalised answer is built and logged as `pllm ask` does it."""
        if not messages or messages[-1]["role"] != "user":
            raise UsageError("the last message must be the user's")
        with self.lock:
            personal, version = self._adapter_for(model or PERSONAL)
            runtime = self._runtime_for(version)
            stats = StreamStats()
            if personal:
                assistant = Assistant(runtime, vault=self.vault, client="api",
                                      retrieval=RetrievalConfig.from_settings(self.settings),
                                      embedder=self._retrieval_embedder())
                system = [m["content"] for m in messages if m["role"] == "system"]
                if system:
                    assistant.system_prompt += "\n\n" + "\n".join(system)
                dialogue = [m for m in messages[:-1] if m["role"] != "system"]
                assistant.history = [Turn(u["content"], a["content"]) for u, a in zip(dialogue[::2], dialogue[1::2],
                                                                                    strict=False)
                                     if u["role"] == "user" and a["role"] == "assistant"]
                if dialogue and dialogue[-1]["role"] == "assistant" and self.vault is not None:
                    # the answer this request follows, so a spoken "no, I meant ..." is feedback on it
                    assistant.last_interaction = self.vault.interaction_answered(dialogue[-1]["content"])
                pieces = (p.text for p in assistant.stream(messages[-1]["content"], config, stats, modality=modality))
            else:
                leading = [m for m in messages[:1] if m["role"] == "system"]  # an app's fixed system turn: kept too
                pieces = (p.text for p in runtime.stream(runtime.chat_prompt(messages), config, stats,
                                                         cached_prefix=runtime.chat_prefix(leading) if leading else ""))
            yield from pieces
            if personal and completion_id and assistant.last_interaction is not None:
                self._logged[completion_id] = assistant.last_interaction
                while len(self._logged) > COMPLETIONS_KEPT:
                    self._logged.popitem(last=False)
            usage.prompt_tokens, usage.completion_tokens = stats.prompt_tokens, stats.tokens
            usage.finish_reason = stats.finish_reason or "stop"

    def _retrieval_embedder(self) -> Embedder | None:
        """The embedder retrieval adds to BM25 where PLLM_EMBEDDINGS asks for it (the default) and it is installed."""
        if not self.settings.embeddings or self.vault is None or embedding_model_dir() is None:
            return None
        return self.embedder()

    def embedder(self) -> Embedder:
        """The packaged sentence embedder, one for the server (POST /v1/embeddings, choosing a function);
        ModelNotFoundError when it is not installed."""
        with self.embedding_lock:
            if self._embedder is None:
                self._embedder = need_embedder("embeddings and function calls")
            return self._embedder

    def transcriber(self) -> Transcriber:
        """The packaged Whisper, one for the server (POST /v1/audio/transcriptions); UsageError naming the `voice`
        extra, or ModelNotFoundError, when it is not installed."""
        with self._transcriber_lock:
            if self._transcriber is None:
                self._transcriber = Transcriber.from_settings(self.settings)
            return self._transcriber

    def plan_call(self, messages: list[Message], mode: str, candidates: list[tools.Tool], *,
                  model: str | None = None, after_result: bool = False) -> tools.Tool | None:
        """The function the answer to `messages` (functions described in them) calls, or None (lm/tools.py), asked
        of the model that would answer."""
        with self.lock:
            _, version = self._adapter_for(model or PERSONAL)
            return tools.plan_call(self._runtime_for(version), messages, mode, candidates,
                                   after_result=after_result,
                                   embedder=self.embedder() if embedding_model_dir() is not None else None)

    # -- what the user gives and takes back ----------------------------------------------------------------------
    def _vault(self) -> Vault:
        if self.vault is None:
            raise NoVaultError("this server has no vault (create one with `pllm init`, then restart it)")
        return self.vault

    def feedback(self, completion_id: str, kind: str, value: str | None) -> tuple[int, int]:
        """(feedback id, interaction id): up, down, edit, regenerate or rating on a logged answer."""
        with self.lock:
            vault = self._vault()
            interaction = self._logged.get(completion_id)
            if interaction is None:
                raise UnknownCompletionError(f"no logged answer {completion_id!r} here (only personalised answers "
                                             f"are logged, the newest {COMPLETIONS_KEPT})")
            return vault.add_feedback(interaction, kind, value), interaction

    def profile(self) -> dict[str, object]:
        with self.lock:
            return build_profile(self._vault()).as_dict()

    def needs_onboarding(self) -> bool:
        with self.lock:
            return needs_onboarding(self._vault())

    def onboard(self, answers: dict[str, str]) -> list[tuple[str, str]]:
        with self.lock:
            return onboard(self._vault(), answers)

    def export(self) -> dict[str, object]:
        with self.lock:
            return self._vault().export()

    def adapters(self) -> list[dict[str, object]]:
        with self.lock:
            store = self._adapter_store()
            return [v.as_dict() for v in store.versions()]

    def promote(self, version: str | None) -> str | None:
        """Make `version` active, or roll back to the one before (None); the new active version, if any."""
        with self.lock:
            store = self._adapter_store()
            if version is None:
                return store.rollback()
            store.promote(version)
            return version

    def privacy_report(self) -> dict[str, object]:
        with self.lock:
            return report_json(self._vault().egress())

    def _adapter_store(self) -> AdapterStore:
        self._vault()
        assert self._store is not None
        return self._store

    def forget(self, *, query: str | None = None, like: bool = False, since: float | None = None,
               until: float | None = None, everything: bool = False, whole_file: bool = False) -> ForgetOutcome:
        """Forget in the vault and retire every adapter that trained on it, never retraining here (training runs
        in its own process: the caller starts it). A retired adapter leaves this runtime's memory too."""
        with self.lock:
            outcome = forget_everywhere(self.settings, self._vault(), query=query, like=like, since=since,
                                        until=until, everything=everything, whole_file=whole_file, retrain=False)
            if any(v in self.runtime.active_adapters for v in outcome.retired):
                self.runtime.set_adapters({})
            if self._merged is not None and self._merged[0] in outcome.retired:
                self._close_merged()
            for version in outcome.retired:
                if version in self.runtime.adapters:
                    self.runtime.unload_adapter(version)
            return outcome

    def close(self) -> None:
        """Free the runtime (the vault is its opener's to close)."""
        with self.lock:
            self._close_merged()
            self.runtime.close()
