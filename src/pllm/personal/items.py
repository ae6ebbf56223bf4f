"""What the vault holds, as typed rows: documents (passages of the user's files), interactions and their
feedback, profile facts and their history, the egress log, synthetic items, and what a forget removed.
`personal.vault` reads and writes them; everything else reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FEEDBACK_KINDS = ("up", "down", "edit", "regenerate", "rating")
VOICE_KIND = "voice"  # a document transcribed from a voice memo; an interaction's modality when it was spoken


@dataclass(frozen=True)
class Document:
    id: int
    source: str
    kind: str
    created_at: float
    content: str
    content_hash: str
    tokens: int
    speaker: str = ""  # '' the user; else who said it in an imported conversation


@dataclass(frozen=True)
class Interaction:
    id: int
    created_at: float
    prompt: str
    answer: str
    adapter_version: str | None
    latency_s: float
    tokens: int
    personal: bool
    client: str
    hour: int
    sentiment: float
    modality: str = "text"  # 'voice': spoken, and transcribed on the device


@dataclass(frozen=True)
class Feedback:
    id: int
    interaction_id: int
    kind: str
    value: str | None
    created_at: float


def accepts(feedback: Feedback) -> bool:
    """Feedback that accepts the answer as it was: a thumbs-up or a rating of 4 or 5."""
    return feedback.kind == "up" or (feedback.kind == "rating" and feedback.value in ("4", "5"))


@dataclass(frozen=True)
class Fact:
    key: str
    value: str
    source: str
    confidence: float
    updated_at: float  # when it was stated
    subject: str = ""  # '' the user; else who said it about themselves in an imported conversation


@dataclass(frozen=True)
class PastFact:
    """A value a fact had before a newer statement replaced it."""

    subject: str
    key: str
    value: str
    source: str
    stated_at: float
    replaced_at: float


@dataclass(frozen=True)
class Egress:
    """One request that left the device, as the privacy gate logged it (the text is the redacted body)."""

    id: int
    created_at: float
    destination: str
    purpose: str
    consent: str  # none (refused, never sent), redacted, full
    redacted_text: str
    placeholders: int
    bytes: int
    entities: dict[str, int] = field(default_factory=dict)  # entity type -> how many were replaced


@dataclass(frozen=True)
class SyntheticItem:
    """An item the T-tier wrote from one of the user's (CDCDA): never the user's own words."""

    id: int
    task: str
    content: str
    content_hash: str
    label: str | None
    seed_hash: str
    model: str
    created_at: float


@dataclass(frozen=True)
class ForgetReport:
    documents: int  # passages (each a document row)
    interactions: int
    facts: int
    hashes: frozenset[str] = frozenset()  # content hashes of everything forgotten: the adapters' provenance keys
    synthetic: int = 0  # items written from a forgotten one, or matching the query themselves

    @property
    def total(self) -> int:
        return self.documents + self.interactions + self.facts + self.synthetic
