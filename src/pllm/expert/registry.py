"""The experts that passed their exam: one folder each under `<home>/cloud/experts/<name>/`, holding `card.json`
(what it covers, its exam scores against the bare base, how it was made), `adapter.gguf` (its LoRA for
llama.cpp), `pairs.jsonl` (what it trained on) and `adapter.safetensors` (the same LoRA in PEFT's naming, for
training on from it: the federated rounds start there). An expert replaces an older one of the same name in one
rename, so a reader sees the old or the new.

    registry = ExpertRegistry(settings.paths.experts)
    registry.register(card, gguf)
    [c.name for c in registry.cards()]
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pllm.errors import ExpertError

Weights = dict[str, np.ndarray]  # a LoRA in PEFT's naming: "...q_proj.lora_A.weight" -> array


@dataclass(frozen=True)
class ExpertCard:
    name: str
    title: str
    description: str
    examples: list[str]
    domain_score: float  # mean log-probability per token of the exam's reference answers, with the expert
    base_score: float  # ... with the bare base model
    gain_interval: tuple[float, float]  # 95% paired bootstrap interval of domain_score - base_score
    n_eval: int
    exam_source: str
    base_model: str
    t_model: str
    train_pairs: int
    details: dict[str, Any] = field(default_factory=dict)  # steps, seconds, cpu, the distillation's report

    def summary(self) -> dict[str, Any]:
        """What `pllm expert list --json` and `/v1/experts` show."""
        return {"name": self.name, "title": self.title, "description": self.description,
                "domain_score": self.domain_score, "base_score": self.base_score,
                "gain_interval": list(self.gain_interval), "n_eval": self.n_eval, "base_model": self.base_model,
                "t_model": self.t_model, "train_pairs": self.train_pairs}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ExpertCard:
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "gain_interval": tuple(known["gain_interval"])})


@functools.lru_cache(maxsize=32)
def _spread_questions(path: str, mtime_ns: int, limit: int) -> tuple[str, ...]:
    """Read once per version of the file: the cloud's catalog asks on every `/v1/experts`."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    questions = [str(json.loads(line)["question"]) for line in lines if line.strip()]
    step = max(1, len(questions) // limit)
    return tuple(questions[::step][:limit])


class ExpertRegistry:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def cards(self) -> list[ExpertCard]:
        found = []
        for path in sorted(self.folder.glob("*/card.json")):
            try:
                found.append(ExpertCard.from_json(json.loads(path.read_text(encoding="utf-8"))))
            except (ValueError, KeyError, TypeError):
                continue  # a damaged card is skipped, not served
        return found

    def card(self, name: str) -> ExpertCard:
        for card in self.cards():
            if card.name == name:
                return card
        known = ", ".join(c.name for c in self.cards()) or "none yet: `pllm expert train NAME`"
        raise ExpertError(f"no expert {name!r} (registered: {known})")

    def adapter_path(self, name: str) -> Path:
        return self.folder / name / "adapter.gguf"

    def questions(self, name: str, limit: int = 200) -> list[str]:
        """Up to `limit` of the questions the expert trained on, spread over its topics: what the router compares
        a question with, besides the description and the examples."""
        path = self.folder / name / "pairs.jsonl"
        if not path.is_file():
            return []
        return list(_spread_questions(str(path), path.stat().st_mtime_ns, limit))

    def version(self) -> tuple[tuple[str, int], ...]:
        """Changes whenever an expert is registered or removed: a server reloads its adapters on a change."""
        return tuple((p.parent.name, p.stat().st_mtime_ns) for p in sorted(self.folder.glob("*/card.json")))

    def weights(self, name: str) -> Weights | None:
        """The expert's LoRA in PEFT's naming (None for an expert registered without it)."""
        from safetensors.numpy import load_file

        path = self.folder / name / "adapter.safetensors"
        return dict(load_file(str(path))) if path.is_file() else None

    def register(self, card: ExpertCard, gguf: bytes, pairs: list[dict[str, str]], weights: Weights | None = None
                 ) -> Path:
        """Write the expert's folder aside, then swap it in."""
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = self.folder / f".{card.name}.new{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        (staging / "adapter.gguf").write_bytes(gguf)
        if weights is not None:
            from safetensors.numpy import save_file

            save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()},
                      str(staging / "adapter.safetensors"))
        (staging / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
        (staging / "card.json").write_text(json.dumps(asdict(card), indent=2) + "\n", encoding="utf-8")
        target = self.folder / card.name
        old = self.folder / f".{card.name}.old{os.getpid()}"
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
        return target
