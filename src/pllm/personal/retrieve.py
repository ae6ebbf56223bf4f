"""Retrieval: the user's items most relevant to a request, fused from BM25, embeddings and recency.

Relevance decides which items are candidates (a BM25 hit, or an embedding close enough); recency only re-ranks
among them, so "what is the capital of France?" pulls in no personal notes at all. Ranks are fused with
reciprocal-rank fusion, then packed into a token budget. The index lives in memory, rebuilt from the vault per
process: nothing plaintext is written to disk. Embedding vectors are stored inside the (encrypted) vault.

    retriever = Retriever.from_vault(vault)
    retriever.search("What is my cat called?", k=3)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pllm.personal.text import STOPWORDS, LightStemmer
from pllm.personal.vault import Vault, approx_tokens

if TYPE_CHECKING:
    from pllm.lm.embeddings import Embedder

RRF_K = 60  # reciprocal-rank-fusion constant (Cormack et al. 2009)


@dataclass(frozen=True)
class Item:
    """One retrievable piece of the user's data."""

    key: str  # "document:12", "interaction:7"
    text: str
    created_at: float

    @property
    def tokens(self) -> int:
        return approx_tokens(self.text)


@dataclass(frozen=True)
class Hit:
    item: Item
    score: float
    why: tuple[str, ...]  # which rankers found it: bm25, embedding, recency


@dataclass(frozen=True)
class RetrievalConfig:
    """How much personal context goes into a prompt."""

    k: int = 3  # items at most
    budget_tokens: int = 384  # their total size at most
    min_similarity: float = 0.35  # embedding cosine below this is not a candidate
    recency_weight: float = 0.5  # share of the recency rank in the fused score

    def __post_init__(self) -> None:
        if self.k < 0 or self.budget_tokens < 0:
            raise ValueError("k and budget_tokens must be >= 0")


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

    def __post_init__(self) -> None:
        if self.items:
            self._bm25 = _bm25s().BM25()
            self._bm25.index(_tokenize([i.text for i in self.items]), show_progress=False)  # type: ignore[attr-defined]

    @classmethod
    def from_vault(cls, vault: Vault, *, embedder: Embedder | None = None, interactions: int = 200) -> Retriever:
        """Index the user's documents and recent exchanges (forgotten items are already gone from the vault)."""
        items = [Item(f"document:{d.id}", d.content, d.created_at) for d in vault.documents()]
        items += [Item(f"interaction:{i.id}", f"Q: {i.prompt}\nA: {i.answer}", i.created_at)
                  for i in vault.interactions(limit=interactions)]
        vectors = None
        if embedder is not None and items:
            vectors = _vectors_for(vault, embedder, items)
        return cls(items, embedder, vectors)

    def bm25_scores(self, query: str) -> np.ndarray:
        if not self.items:
            return np.zeros(0)
        terms = _tokenize([query])[0]
        if not terms:
            return np.zeros(len(self.items))
        return np.asarray(self._bm25.get_scores(terms))  # type: ignore[attr-defined]

    def search(self, query: str, config: RetrievalConfig | None = None) -> list[Hit]:
        config = config or RetrievalConfig()
        if not self.items or config.k == 0:
            return []
        # Each ranker gives (item, rank) pairs; equal scores share a rank, so ties are left to the other rankers.
        rankings: dict[str, list[tuple[int, int]]] = {}
        rankings["bm25"] = _ranks(self.bm25_scores(query), above=0.0)
        if self.embedder is not None and self.vectors is not None:
            sims = self.vectors @ self.embedder.encode([query])[0]
            rankings["embedding"] = _ranks(sims, above=config.min_similarity - 1e-9)
        candidates = {i for ranking in rankings.values() for i, _ in ranking}
        if not candidates:
            return []
        rankings["recency"] = _ranks(np.array([self.items[i].created_at if i in candidates else -np.inf
                                               for i in range(len(self.items))]), above=-np.inf)
        fused: dict[int, float] = {}
        why: dict[int, list[str]] = {}
        for name, ranking in rankings.items():
            weight = config.recency_weight if name == "recency" else 1.0
            for i, rank in ranking:
                fused[i] = fused.get(i, 0.0) + weight / (RRF_K + rank + 1)
                if name != "recency":
                    why.setdefault(i, []).append(name)
        ordered = sorted(fused, key=lambda i: -fused[i])
        hits: list[Hit] = []
        used = 0
        for i in ordered:
            item = self.items[i]
            if len(hits) == config.k:
                break
            if used + item.tokens > config.budget_tokens:
                continue
            used += item.tokens
            hits.append(Hit(item, round(fused[i], 5), tuple(why.get(i, ()))))
        return hits


def _ranks(scores: np.ndarray, *, above: float) -> list[tuple[int, int]]:
    """(index, rank) for scores > `above`, best first; equal scores share the rank of the first of them."""
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > above]
    ranked: list[tuple[int, int]] = []
    for position, i in enumerate(order):
        tied = ranked and scores[i] == scores[ranked[-1][0]]
        ranked.append((i, ranked[-1][1] if tied else position))
    return ranked


def _vectors_for(vault: Vault, embedder: Embedder, items: list[Item]) -> np.ndarray:
    """Embeddings of documents are cached inside the vault; interactions are embedded on the fly."""
    stored = vault.embeddings(embedder.name)
    doc_ids = {n: int(item.key.split(":")[1]) for n, item in enumerate(items) if item.key.startswith("document:")}
    missing = [n for n, doc_id in doc_ids.items() if doc_id not in stored]
    if missing:
        fresh = embedder.encode([items[n].text for n in missing])
        vault.put_embeddings(embedder.name, {doc_ids[n]: fresh[j].tobytes() for j, n in enumerate(missing)})
        stored.update({doc_ids[n]: fresh[j].tobytes() for j, n in enumerate(missing)})
    others = [n for n in range(len(items)) if n not in doc_ids]
    other_vecs = embedder.encode([items[n].text for n in others]) if others else None
    out = np.zeros((len(items), embedder.dim), dtype=np.float32)
    for n, doc_id in doc_ids.items():
        out[n] = np.frombuffer(stored[doc_id], dtype=np.float32)
    for j, n in enumerate(others):
        out[n] = other_vecs[j]  # type: ignore[index]
    return out

