"""Retrieval: the user's items most relevant to a request, by relevance first (BM25 and embeddings, fused).

Relevance decides: an item is a candidate only when BM25 or the embeddings (close enough) find it. Its relevance is
one score: its BM25 score as a share of the best, lifted by its conversation session's BM25 (what is asked about is
talked over for several turns), by the next turn's (a reply repeats what it answers) and, where the question names
one speaker of a conversation, by being theirs; plus the embeddings' cosine as a share of the best (PLLM_EMBEDDINGS,
on by default). Weights chosen on LoCoMo, BEAM and RealMem pooled.
Recency is a tie-break, and a real signal only for questions that ask
about the present ("what is my current job?", "where do I live now?"). Documents are indexed as passages that fit
the prompt budget, so a long text is found by its relevant part; a turn of a conversation between people is indexed
with who said it and the end of the turn before it, which is often the question it answers ("What did you paint?" /
"A sunrise, last year"); a user's chat with an assistant is not (its long replies repeat the question's words, and
the context let them crowd out the user's own turns: docs/BENCHMARKS.md, "Memory"). The
assistant's own answers are memory only where
the user accepted or edited them, never when degenerate, and then below the user's own documents. The index lives
in memory, rebuilt from the vault per process: nothing plaintext is written to disk. Embedding vectors are stored
inside the (encrypted) vault.

    retriever = Retriever.from_vault(vault)
    retriever.search("What is my cat called?", RetrievalConfig(k=3))
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pllm.config import default
from pllm.personal.ingest import CONVERSATION_KIND, chunk_text
from pllm.personal.items import Document
from pllm.personal.text import STOPWORDS, LightStemmer, content_words, is_degenerate, light_stem
from pllm.personal.vault import Vault, approx_tokens

if TYPE_CHECKING:
    from pllm.config import Settings
    from pllm.lm.embeddings import Embedder

RRF_K = 60  # reciprocal-rank-fusion constant (Cormack et al. 2009)
PASSAGE_TOKENS = 160  # a document is indexed as passages of about this size (three fit the default budget)
CONTEXT_TOKENS = 60  # of the turn before, indexed with a conversation turn
SESSION_GAP_S = 3600  # turns further apart than this are not one exchange
# How a turn's conversation lifts it (weights chosen on LoCoMo, BEAM and RealMem pooled; docs/BENCHMARKS.md,
# "Memory"): the whole session's BM25 score, since what a question asks about is talked over for several turns and
# the answering turn alone may share few of its words; and the next turn's score, since a reply often repeats what
# the turn before it said ("A lake at sunrise" / "Your lake painting is lovely").
SESSION_WEIGHT = 0.4
NEXT_TURN_WEIGHT = 0.3
# With PLLM_EMBEDDINGS, the MiniLM cosine above this floor, as a share of the best, at this weight beside BM25's.
EMBEDDING_WEIGHT = 1.0
EMBEDDING_FLOOR = 0.0
# A question that names one speaker of a conversation ("What did Caroline research?") is about their turns: those
# found are lifted by this much, about as much as a best BM25 match (LoCoMo: recall@3 +0.03; docs/BENCHMARKS.md).
SPEAKER_WEIGHT = 1.0
EXCHANGE_SHARE = 0.5  # an accepted exchange scores this share of a document ranked the same: the user's words first
CUE_RECENCY = 0.5  # the recency rank's share in the fused score for a question about the present
PRESENT_CUES = re.compile(r"\b(current(ly)?|now|latest|last|recent(ly)?|newest|still|anymore|these days|"
                          r"at the moment|nowadays|most recent)\b", re.I)


@dataclass(frozen=True)
class Item:
    """One retrievable piece of the user's data."""

    key: str  # "document:12", "document:12#2" (its second passage), "interaction:7"
    text: str
    created_at: float
    weight: float = 1.0  # multiplies the relevance rankers' share (accepted exchanges: EXCHANGE_SHARE)
    context: str = ""  # indexed with the text, not shown: the end of the conversation turn before this one
    session: str = ""  # the conversation session or file it belongs to ('' alone: its own)
    speaker: str = ""  # who said it, in a conversation between people ('' elsewhere)

    @property
    def tokens(self) -> int:
        return approx_tokens(self.text)


@dataclass(frozen=True)
class Hit:
    item: Item
    score: float
    why: tuple[str, ...]  # which rankers found it: bm25, embedding


@dataclass(frozen=True)
class RetrievalConfig:
    """How much personal context goes into a prompt."""

    k: int = default("retrieval_k")  # items at most
    budget_tokens: int = default("context_tokens")  # their total size at most
    min_similarity: float = 0.35  # embedding cosine below this is not a candidate
    excerpt_tokens: int = default("excerpt_tokens")  # of each item the prompt shows the sentences most like the
    # request, about this many tokens (0: whole items); prompt tokens are most of the time to the first token
    recency_weight: float | None = None  # share of the recency rank; None: CUE_RECENCY for questions about the
    # present, else 0 (recency then only breaks ties)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetrievalConfig:
        return cls(k=settings.retrieval_k, budget_tokens=settings.context_tokens,
                   excerpt_tokens=settings.excerpt_tokens)

    def __post_init__(self) -> None:
        if self.k < 0 or self.budget_tokens < 0 or self.excerpt_tokens < 0:
            raise ValueError("k, budget_tokens and excerpt_tokens must be >= 0")

    def recency_for(self, query: str) -> float:
        if self.recency_weight is not None:
            return self.recency_weight
        return CUE_RECENCY if PRESENT_CUES.search(query) else 0.0


def _bm25s() -> Any:
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # its import sets DEBUG and logs every index build
    return bm25s


def _tokenize(texts: list[str]) -> list[list[str]]:
    return _bm25s().tokenize(texts, stopwords=list(STOPWORDS), stemmer=LightStemmer(), return_ids=False,
                          show_progress=False)


@dataclass
class Retriever:
    items: list[Item]
    embedder: Embedder | None = None
    vectors: np.ndarray | None = None  # one row per item, L2-normalised
    _bm25: object = field(default=None, repr=False)

    _sessions: object = field(default=None, repr=False)  # BM25 over each session's items joined
    _session_of: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int), repr=False)
    _next_turn: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int), repr=False)  # -1: none
    _speakers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object), repr=False)
    _speaker_names: set[str] = field(default_factory=set, repr=False)  # the people among them

    def __post_init__(self) -> None:
        if self.items:
            self._bm25 = _bm25s().BM25()
            self._bm25.index(_tokenize([f"{i.context}\n{i.text}" for i in self.items]), show_progress=False)  # type: ignore[attr-defined]
            # Sessions: each conversation sitting's items joined (one pass); an item outside a conversation has
            # no session and no lift.
            sessions: dict[str, list[str]] = {}
            for item in self.items:
                if item.session:
                    sessions.setdefault(item.session, []).append(item.text)
            number = {name: n for n, name in enumerate(sessions)}
            self._session_of = np.array([number.get(i.session, -1) for i in self.items])
            if sessions:
                self._sessions = _bm25s().BM25()
                self._sessions.index(_tokenize(["\n".join(texts) for texts in sessions.values()]),  # type: ignore[attr-defined]
                                     show_progress=False)
            self._next_turn = _next_turns(self.items)
            self._speakers = np.array([i.speaker for i in self.items], dtype=object)
            self._speaker_names = {i.speaker for i in self.items if i.speaker.lower() not in ROLE_SPEAKERS}

    @classmethod
    def from_vault(cls, vault: Vault, *, embedder: Embedder | None = None) -> Retriever:
        """Index the user's documents (as passages) and the exchanges they accepted (forgotten items are already
        gone from the vault)."""
        items = document_passages(vault)
        items += [Item(f"interaction:{i.id}", f"Q: {i.prompt}\nA: {answer}", i.created_at, EXCHANGE_SHARE)
                  for i, answer in vault.accepted_answers() if not is_degenerate(answer)]
        vectors = None
        if embedder is not None and items:
            vectors = _vectors_for(vault, embedder, items)
        return cls(items, embedder, vectors)

    def bm25_scores(self, query: str) -> np.ndarray:
        return self._bm25_of(_tokenize([query])[0])

    def _bm25_of(self, terms: list[str]) -> np.ndarray:
        if not self.items:
            return np.zeros(0)
        if not terms:
            return np.zeros(len(self.items))
        return np.asarray(self._bm25.get_scores(terms))  # type: ignore[attr-defined]

    def _speaker_named_in(self, query: str) -> str:
        """The one speaker the query names by name or first name ("What did Caroline say ..."), else ''."""
        names = {name for name in self._speaker_names if any(
            len(part) >= 3 and re.search(rf"\b{re.escape(part)}\b", query, re.I) for part in {name, name.split()[0]})}
        return names.pop() if len(names) == 1 else ""

    def _lifted(self, bm25: np.ndarray, terms: list[str]) -> np.ndarray:
        """Each item's BM25 score (`bm25`, as a share of the best), lifted by its session's and by the next
        turn's."""
        own = _share_of_best(bm25)
        if not own.any() or self._sessions is None:
            return own
        by_session = _share_of_best(np.asarray(self._sessions.get_scores(terms)))  # type: ignore[attr-defined]
        in_one = self._session_of >= 0
        score = own.copy()
        score[in_one] += SESSION_WEIGHT * by_session[self._session_of[in_one]]
        following = self._next_turn >= 0
        score[following] += NEXT_TURN_WEIGHT * own[self._next_turn[following]]
        return score

    def search(self, query: str, config: RetrievalConfig | None = None) -> list[Hit]:
        config = config or RetrievalConfig()
        if not self.items or config.k == 0:
            return []
        # One relevance score: BM25's lifted by session and reply (each at most 1 before its lift) plus the
        # embeddings' cosine above a floor, as a share of the best; recency is fused by rank where asked for.
        terms = _tokenize([query])[0]
        bm25 = self._bm25_of(terms)
        relevance = self._lifted(bm25, terms)
        by_words = bm25 > 0  # a lift orders what the words or the meaning found, finds nothing
        found = by_words.copy()
        by_meaning = np.zeros(len(self.items), dtype=bool)
        if self.embedder is not None and self.vectors is not None:
            sims = self.vectors @ self.embedder.encode([query])[0]
            by_meaning = sims >= config.min_similarity - 1e-9
            relevance += EMBEDDING_WEIGHT * _share_of_best(np.clip(sims - EMBEDDING_FLOOR, 0.0, None))
            found |= by_meaning
        named = self._speaker_named_in(query)
        if named:
            relevance += SPEAKER_WEIGHT * (self._speakers == named)
        fused: dict[int, float] = {}
        why: dict[int, list[str]] = {}
        for i, rank in _ranks(np.where(found, np.maximum(relevance, 1e-9), 0.0), above=0.0):
            fused[i] = self.items[i].weight / (RRF_K + rank + 1)
            why[i] = [name for name, hit in (("bm25", by_words[i]), ("embedding", by_meaning[i])) if hit]
        candidates = set(fused)
        if not candidates:
            return []
        recency = config.recency_for(query)
        if recency:
            dates = np.array([self.items[i].created_at if i in candidates else -np.inf for i in range(len(self.items))])
            for i, rank in _ranks(dates, above=-np.inf):
                fused[i] += recency / (RRF_K + rank + 1)
        ordered = sorted(fused, key=lambda i: (-fused[i], -self.items[i].created_at))  # ties: the newer item
        hits: list[Hit] = []
        used = 0
        for i in ordered:
            item = self.items[i]
            if len(hits) == config.k:
                break
            if used + item.tokens > config.budget_tokens:
                continue
            used += item.tokens
            hits.append(Hit(item, round(fused[i], 5), tuple(why[i])))
        return hits


SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def relevant_excerpt(text: str, query: str, max_tokens: int, *, shown: set[str] | None = None) -> str:
    """The sentences of `text` that bear on `query`, best first, kept in their own order within about `max_tokens`
    (gaps marked "..."); the whole text when it fits or `max_tokens` is 0.

    A sentence scores the query words it shares, each weighted by 1 / the number of the item's sentences that have
    it: the words every sentence repeats (the item's subject) say less than the one that names what was asked. The
    best sentence goes in first, then the others by score per token while they fit. A
    sentence already in `shown` (those of earlier notes of the same prompt; the set is updated) is not repeated: ""
    when the item has nothing new. A sentence too long alone is cut to the words around the query's.
    """
    flat = " ".join(text.split())
    fits = not max_tokens or approx_tokens(flat) <= max_tokens
    sentences = [flat] if fits else [" ".join(s.split()) for s in SENTENCE_END.split(text) if s.strip()]
    seen = shown if shown is not None else set()
    fresh = [i for i, s in enumerate(sentences) if s.lower() not in seen]
    if not fresh:
        return ""
    if fits:
        seen.add(flat.lower())
        return flat
    terms = {light_stem(w) for w in content_words(query)}
    shared = [{light_stem(w) for w in content_words(s)} & terms for s in sentences]
    spread = Counter(t for words in shared for t in words)
    score = [sum(1 / spread[t] for t in words) for words in shared]
    relevant = [i for i in fresh if score[i]] if any(score) else fresh  # none bears on it: found by meaning
    if not relevant:
        return ""
    chosen: list[int] = []
    used = 0
    # The best sentence first, then the rest by score per token: the budget holds the most that bears on the query.
    best = min(relevant, key=lambda i: (-score[i], i))
    rest = sorted((i for i in relevant if i != best), key=lambda i: (-score[i] / approx_tokens(sentences[i]), i))
    for i in [best, *rest]:
        cost = approx_tokens(sentences[i])
        if used + cost <= max_tokens:
            chosen.append(i)
            used += cost
        elif not chosen:  # the best sentence alone is too long: the words around the query's
            seen.add(sentences[i].lower())
            return _window(sentences[i], terms, max_tokens)
    seen.update(sentences[i].lower() for i in chosen)
    parts, last = [], -1
    for i in sorted(chosen):
        parts.append(("... " if i > last + 1 else "") + sentences[i])
        last = i
    return " ".join(parts) + (" ..." if last < len(sentences) - 1 else "")


def _window(sentence: str, terms: set[str], max_tokens: int) -> str:
    """The run of words of `sentence` within about `max_tokens` that holds the most of `terms`."""
    words = sentence.split()
    size = len(words)
    while size > 1 and approx_tokens(" ".join(words[:size])) > max_tokens:
        size = size * 4 // 5
    hits = [int(bool({light_stem(w) for w in content_words(word)} & terms)) for word in words]
    counts = [sum(hits[start:start + size]) for start in range(len(words) - size + 1)]
    tops = [start for start, count in enumerate(counts) if count == max(counts)]
    best = tops[len(tops) // 2]  # of the windows holding the most, the middle one: the query's words centred
    return ("... " if best else "") + " ".join(words[best:best + size]) + (" ..." if best + size < len(words) else "")


def document_passages(vault: Vault) -> list[Item]:
    """Every document as passages of about PASSAGE_TOKENS, each dated like its document; a conversation turn's first
    passage carries the end of the turn before as context. A file's document is already one passage of it (a
    paragraph, a diary entry: `ingest.passages`); only a longer one (a LaMP item, a long turn) is cut here."""
    items = []
    last: dict[str, tuple[Document, str]] = {}  # per conversation file: its latest turn and that turn's session
    for d in vault.documents():
        parts = chunk_text(d.content, PASSAGE_TOKENS) or [d.content]
        before, session = last.get(d.source, (None, ""))
        context = _speaker_and_turn_before(before, d)  # two chats (or a note) at the same time stay apart
        if d.kind != CONVERSATION_KIND:
            session = ""
        elif not (session and _same_session(before, d)):
            session = f"{d.source}@{d.created_at}"
        items += [Item(f"document:{d.id}" if len(parts) == 1 else f"document:{d.id}#{n}", part, d.created_at,
                       context=context if n == 1 else "", session=session, speaker=_speaker_of(d))
                  for n, part in enumerate(parts, start=1)]
        last[d.source] = (d, session)
    # The user's own turns keep no speaker: in a session with people in it, the name `pllm ingest` wrote before
    # their text says who they are ("Mara: ..."); in a chat with an assistant nobody is named.
    with_people = {i.session for i in items if i.session and i.speaker}
    named: dict[int | None, str] = {}
    for i in items:  # a long turn's first passage holds the name
        if not i.speaker and i.session in with_people:
            named.setdefault(document_id(i.key), _named_before(i.text))
    return [replace(i, speaker=named[document_id(i.key)]) if document_id(i.key) in named else i for i in items]


# Speakers that are roles, not people: a chat with an assistant (LongMemEval, BEAM, RealMem, `pllm chat`'s own log).
ROLE_SPEAKERS = frozenset(("", "user", "assistant", "me", "system", "bot", "ai", "chatgpt", "claude", "gemini",
                           "copilot", "pllm"))


def _speaker_and_turn_before(before: Document | None, turn: Document) -> str:
    """What a turn of a conversation between people is indexed with beside its text: who said it ("What did Caroline
    say about ..." finds Caroline's turns) and the end of the turn before; '' for any other document, and for a
    chat with an assistant, where neither turn is a person's (the user's own turns have no speaker)."""
    if turn.kind != CONVERSATION_KIND or not (_a_person(turn) or _a_person(before)):
        return ""
    who = f"{turn.speaker.strip()}: " if _a_person(turn) else ""
    return f"{who}{_turn_before(before, turn)}".strip()


_NAMED = re.compile(r"((?:[A-Z][\w'’-]*)(?: [A-Z][\w'’-]*){0,2}): ")  # "Mara: ", "Mara Lindqvist: "


def _speaker_of(turn: Document) -> str:
    """Who said a turn of a conversation between people, where the vault says so ('' for the user's own turns)."""
    return turn.speaker.strip() if turn.kind == CONVERSATION_KIND and _a_person(turn) else ""


def _named_before(text: str) -> str:
    named = _NAMED.match(text)
    return named.group(1) if named else ""


def _a_person(turn: Document | None) -> bool:
    return turn is not None and turn.speaker.strip().lower() not in ROLE_SPEAKERS


def _turn_before(before: Document | None, turn: Document) -> str:
    """The last CONTEXT_TOKENS or so of the previous turn of the same conversation and session, else ''. The vault
    lists documents by date, so a forgotten turn is simply not there to be anyone's context."""
    if before is None or not _same_session(before, turn):
        return ""
    sentences = re.split(r"(?<=[.!?])\s+", before.content.strip())
    tail = sentences.pop()
    while sentences and approx_tokens(f"{sentences[-1]} {tail}") <= CONTEXT_TOKENS:
        tail = f"{sentences.pop()} {tail}"
    if approx_tokens(tail) > CONTEXT_TOKENS:  # one long sentence: its last words
        tail = tail[-4 * CONTEXT_TOKENS:].partition(" ")[2]
    return tail


def _next_turns(items: list[Item]) -> np.ndarray:
    """For each item, the first item of the next turn in its session (a long turn's passages are one turn), or -1;
    sessions of several conversations may interleave in the items' order."""
    out = np.full(len(items), -1)
    members: dict[str, list[int]] = {}
    for n, item in enumerate(items):
        if item.session:
            members.setdefault(item.session, []).append(n)
    for positions in members.values():
        following = -1
        for later, n in zip([*positions[1:], -1][::-1], positions[::-1], strict=True):
            if later >= 0 and document_id(items[later].key) != document_id(items[n].key):
                following = later
            out[n] = following
    return out


def _share_of_best(scores: np.ndarray) -> np.ndarray:
    best = float(scores.max()) if len(scores) else 0.0
    return scores / best if best > 0 else scores


def _same_session(before: Document | None, turn: Document) -> bool:
    """Whether `turn` follows `before` in one sitting of one conversation: same file, at most SESSION_GAP_S apart."""
    return (before is not None and before.kind == turn.kind == CONVERSATION_KIND and before.source == turn.source
            and 0 <= turn.created_at - before.created_at <= SESSION_GAP_S)


def _ranks(scores: np.ndarray, *, above: float) -> list[tuple[int, int]]:
    """(index, rank) for scores > `above`, best first; equal scores share the rank of the first of them."""
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > above]
    ranked: list[tuple[int, int]] = []
    for position, i in enumerate(order):
        tied = ranked and scores[i] == scores[ranked[-1][0]]
        ranked.append((i, ranked[-1][1] if tied else position))
    return ranked


def embed_passages(vault: Vault, embedder: Embedder) -> None:
    """Embed the passages of the vault's documents that have no vectors yet, and keep them in the vault (`pllm
    ingest` pays the cost, not the next question)."""
    _vectors_for(vault, embedder, document_passages(vault))


def document_id(key: str) -> int | None:
    """The vault document an item key names ("document:12", "document:12#2"), or None (an exchange)."""
    kind, _, rest = key.partition(":")
    return int(rest.split("#")[0]) if kind == "document" else None


def _vectors_for(vault: Vault, embedder: Embedder, items: list[Item]) -> np.ndarray:
    """Passage embeddings are cached inside the vault, one blob of rows per document; exchanges are embedded on
    the fly."""
    cache = f"{embedder.name}#passages{PASSAGE_TOKENS}"
    stored = vault.embeddings(cache)
    rows: dict[int, list[int]] = {}
    for n, item in enumerate(items):
        doc_id = document_id(item.key)
        if doc_id is not None:
            rows.setdefault(doc_id, []).append(n)
    out = np.zeros((len(items), embedder.dim), dtype=np.float32)
    fresh: dict[int, bytes] = {}
    for doc_id, positions in rows.items():
        blob = stored.get(doc_id)
        vectors = np.frombuffer(blob, dtype=np.float32).reshape(-1, embedder.dim) if blob else None
        if vectors is None or len(vectors) != len(positions):
            vectors = np.asarray(embedder.encode([items[n].text for n in positions]), dtype=np.float32)
            fresh[doc_id] = vectors.tobytes()
        out[positions] = vectors
    if fresh:
        vault.put_embeddings(cache, fresh)
    others = [n for n, item in enumerate(items) if document_id(item.key) is None]
    if others:
        out[others] = embedder.encode([items[n].text for n in others])
    return out
