"""The P-tier assistant: one request, end to end on the device.

1. profile layer: the profile summary goes into the system prompt;
2. retrieval: the user's most relevant items (within a token budget) go before the question;
3. runtime: the model answers, streamed;
4. the exchange is logged in the vault with its context (time of day, client, sentiment), facts the user stated
   are learned, and feedback (/good, /bad, /edit, a rating) attaches to the logged interaction.

    assistant = Assistant(runtime, vault=vault)
    reply = assistant.answer("What is my cat called?")
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from pllm.errors import CloudError, CloudUnavailableError, ConsentError, UsageError
from pllm.lm.runtime import Completion, GenerationConfig, Message, Piece, Runtime, StreamStats
from pllm.personal.profile import learn_facts, prompt_summary, sentiment
from pllm.personal.retrieve import Hit, RetrievalConfig, Retriever, relevant_excerpt
from pllm.personal.router import draft_confidence
from pllm.personal.vault import Vault

if TYPE_CHECKING:
    from pllm.lm.embeddings import Embedder
    from pllm.personal.remote import CloudClient
    from pllm.personal.router import Route, Router

SYSTEM_PROMPT = "You are a helpful personal assistant. Answer briefly and accurately."
# A spoken request gets an answer that reads aloud well: short, plain sentences.
SPOKEN_PROMPT = ("The user said this aloud and will hear the answer read out: answer in one or two short, plain "
                 "sentences, with no lists, no markup and no symbols.")
SPOKEN_MAX_TOKENS = 96
# "No, I meant ...": a spoken correction of the request before it, taken as feedback on that answer.
CORRECTION = re.compile(r"^\W*(?:no|nope|not that|sorry)\W+(?:i\s+)?(?:meant|mean|said)\b", re.I)


@dataclass(frozen=True)
class Turn:
    """One exchange of a conversation."""

    user: str
    assistant: str


@dataclass(frozen=True)
class PersonalContext:
    """What personalised one answer: shown by --show-context, logged nowhere else."""

    profile_summary: str
    hits: list[Hit]

    def render(self) -> str:
        lines = ["profile:", *("  " + line for line in (self.profile_summary or "(empty)").splitlines()), "items:"]
        lines += [f"  [{h.item.key}, {'+'.join(h.why)}] {' '.join(h.item.text.split())[:160]}" for h in self.hits]
        return "\n".join(lines if self.hits else [*lines, "  (none relevant)"])


def user_turn(prompt: str, hits: list[Hit], excerpt_tokens: int = 0) -> str:
    """The question, preceded by the retrieved items when there are any (the small model reads them best here),
    each with its date, so "when" questions can be answered. Each item is cut to its sentences that bear on the
    question (`excerpt_tokens`, 0: whole), and a sentence an earlier item already showed is not repeated."""
    shown: set[str] = set()
    notes = []
    for hit in hits:
        excerpt = relevant_excerpt(hit.item.text, prompt, excerpt_tokens, shown=shown) if excerpt_tokens else (
            " ".join(hit.item.text.split()))
        if excerpt:
            notes.append(f"- ({time.strftime('%Y-%m-%d', time.localtime(hit.item.created_at))}) {excerpt}")
    if not notes:
        return prompt
    return "My notes:\n" + "\n".join(notes) + f"\n\nUsing my notes, answer: {prompt}"


@dataclass
class Assistant:
    """Builds the prompt for one request, runs it, and remembers it."""

    runtime: Runtime
    vault: Vault | None = None
    personal: bool = True  # False: the plain base model, nothing from the vault in the prompt
    use_context: bool = True  # False: no profile and no retrieved items (the user's adapter still applies)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    client: str = "cli"
    learn_with_model: bool = False  # also ask the model for facts in the user's messages
    embedder: Embedder | None = None  # adds embedding similarity to retrieval
    system_prompt: str = SYSTEM_PROMPT
    history: list[Turn] = field(default_factory=list)
    last_context: PersonalContext | None = None
    last_interaction: int | None = None
    _retriever: Retriever | None = field(default=None, repr=False)

    @property
    def personalised(self) -> bool:
        return self.personal and self.vault is not None

    def retriever(self) -> Retriever:
        assert self.vault is not None
        if self._retriever is None:
            self._retriever = Retriever.from_vault(self.vault, embedder=self.embedder)
        return self._retriever

    def context(self, prompt: str) -> PersonalContext | None:
        if not self.personalised or not self.use_context:
            return None
        assert self.vault is not None
        return PersonalContext(prompt_summary(self.vault), self.retriever().search(prompt, self.retrieval))

    def messages(self, prompt: str, context: PersonalContext | None = None, modality: str = "text") -> list[Message]:
        system = self.system_prompt + ("\n" + SPOKEN_PROMPT if modality == "voice" else "")
        if context and context.profile_summary:
            system += "\n\nAbout the user:\n" + context.profile_summary
        messages: list[Message] = [{"role": "system", "content": system}]
        for turn in self.history:
            messages += [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.assistant}]
        messages.append({"role": "user", "content": user_turn(prompt, context.hits if context else [],
                                                              self.retrieval.excerpt_tokens)})
        return messages

    def stream(self, prompt: str, config: GenerationConfig | None = None, stats: StreamStats | None = None, *,
               modality: str = "text") -> Iterator[Piece]:
        """Stream the answer; once the stream is exhausted the turn is in the history and logged in the vault.
        A spoken request (`modality="voice"`) is answered short, and "no, I meant ..." marks the answer before it
        as wrong."""
        stats = stats if stats is not None else StreamStats()
        if modality == "voice":
            self._take_correction(prompt)
            config = config or GenerationConfig()
            config = replace(config, max_tokens=min(config.max_tokens, SPOKEN_MAX_TOKENS))
        pieces: list[str] = []
        for piece in self._generate(prompt, config, stats, modality):
            pieces.append(piece.text)
            yield piece
        self._remember(prompt, "".join(pieces), stats, modality=modality)

    def _take_correction(self, prompt: str) -> None:
        """A spoken "no, I meant ..." right after an answer is a thumbs-down on it, with what was meant."""
        if self.vault is not None and self.last_interaction is not None and CORRECTION.match(prompt):
            self.vault.add_feedback(self.last_interaction, "down", f"spoken correction: {prompt}")

    def _generate(self, prompt: str, config: GenerationConfig | None, stats: StreamStats,
                  modality: str = "text") -> Iterator[Piece]:
        self.last_context = self.context(prompt)
        messages = self.messages(prompt, self.last_context, modality)
        rendered = self.runtime.chat_prompt(messages)
        # The system turn (with the profile) is the same from one request to the next: its KV state is kept.
        yield from self.runtime.stream(rendered, config, stats, cached_prefix=self.runtime.chat_prefix(messages[:1]))

    def answer(self, prompt: str, config: GenerationConfig | None = None, *, modality: str = "text") -> Completion:
        stats = StreamStats()
        text = "".join(p.text for p in self.stream(prompt, config, stats, modality=modality))
        return Completion.from_stats(text, stats, self.runtime.active_adapters)

    def answer_remote(self, prompt: str, cloud: CloudClient, config: GenerationConfig | None = None) -> Completion:
        """The same request, answered by the T-tier: it leaves through the privacy gate (redacted, logged), the
        answer comes back restored, and the exchange is remembered like a local one."""
        config = config or GenerationConfig()
        self.last_context = self.context(prompt)
        reply = cloud.chat(self.messages(prompt, self.last_context), purpose="ask", max_tokens=config.max_tokens,
                           temperature=config.temperature)
        stats = StreamStats(prompt_tokens=reply.prompt_tokens, tokens=reply.completion_tokens, finish_reason="stop")
        stats.ended_at = stats.started_at + reply.seconds
        self._remember(prompt, reply.text, stats, adapters={})
        return Completion.from_stats(reply.text, stats, {})

    def answer_routed(self, prompt: str, router: Router, cloud: CloudClient, config: GenerationConfig | None = None,
                      *, voice: str = "expert") -> tuple[Completion, Route]:
        """Answer where the router sends the question: here (personal questions always), a domain expert, or the
        T-model. A general question is first drafted here; the draft is the answer unless the local model is unsure
        of it. An expert's answer is shown as the expert's, or retold here in the assistant's voice
        (`voice="assistant"`). When the expert or the T-model cannot be reached, the device answers and the
        route says so. The decision is logged in the vault with the interaction."""
        config = config or GenerationConfig()
        drafts: list[tuple[str, StreamStats]] = []

        def confidence() -> float:
            stats = StreamStats()
            text = "".join(p.text for p in self._generate(prompt, config, stats))
            drafts.append((text, stats))
            return draft_confidence(*self.runtime.answer_logprob(self.messages(prompt, self.last_context), text))

        route = router.route(prompt, confidence)
        completion: Completion | None = None
        try:
            if route.target == "expert" and route.expert:
                completion = self._answer_expert(prompt, route.expert, cloud, config, voice)
            elif route.target == "cloud":
                completion = self.answer_remote(prompt, cloud, config)
        except (CloudError, CloudUnavailableError, ConsentError) as exc:
            route = replace(route, target="local", reason=f"{route.reason}; not sent ({exc}), answered here")
        if completion is None:
            if drafts:
                text, stats = drafts[0]
                self._remember(prompt, text, stats)
                completion = Completion.from_stats(text, stats, self.runtime.active_adapters)
            else:
                completion = self.answer(prompt, config)
        if self.vault is not None and self.last_interaction is not None:
            self.vault.log_route(self.last_interaction, route.destination, route.reason, route.scores)
        return completion, route

    def _answer_expert(self, prompt: str, expert: str, cloud: CloudClient, config: GenerationConfig,
                       voice: str) -> Completion:
        """Only the question goes to the expert (redacted by the gate): no profile, no notes."""
        reply = cloud.ask_expert(expert, [{"role": "user", "content": prompt}], max_tokens=config.max_tokens,
                                 temperature=config.temperature)
        text = reply.text
        stats = StreamStats(prompt_tokens=reply.prompt_tokens, tokens=reply.completion_tokens, finish_reason="stop")
        stats.ended_at = stats.started_at + reply.seconds
        if voice == "assistant":
            retell = [{"role": "system", "content": self.system_prompt},
                      {"role": "user", "content": f"{prompt}\n\nAn expert on {expert} answered: {text}\n\n"
                                                  "Give me that answer in your own words, briefly."}]
            text = self.runtime.chat(retell, config).text
        self._remember(prompt, text, stats, adapters={})
        return Completion.from_stats(text, stats, {})

    def _remember(self, prompt: str, answer: str, stats: StreamStats, adapters: dict[str, float] | None = None, *,
                  modality: str = "text") -> None:
        self.history.append(Turn(prompt, answer))
        if self.vault is None:
            return
        adapters = self.runtime.active_adapters if adapters is None else adapters
        self.last_interaction = self.vault.log_interaction(
            prompt=prompt, answer=answer, latency_s=stats.seconds, tokens=stats.tokens,
            personal=self.personalised, client=self.client, sentiment=sentiment(prompt),
            adapter_version=",".join(adapters) or None, created_at=time.time(), modality=modality)
        learn_facts(self.vault, prompt, source=f"interaction:{self.last_interaction}",
                    runtime=self.runtime if self.learn_with_model else None)
        self._retriever = None  # the new exchange is retrievable from the next request on

    def feedback(self, kind: str, value: str | None = None) -> int:
        """Attach feedback to the last answer (kinds: up, down, edit, regenerate, rating)."""
        if self.vault is None or self.last_interaction is None:
            raise UsageError("there is no logged answer to give feedback on yet")
        return self.vault.add_feedback(self.last_interaction, kind, value)

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
