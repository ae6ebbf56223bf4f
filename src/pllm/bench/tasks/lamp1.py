"""LaMP-1: which of two references would this author cite, given a title they wrote.

Synthetic authors each work in one field; the query title is generic, and the two references come from two fields,
so only the author's own papers (the profile) say which one they would cite.
"""

from __future__ import annotations

import re
from typing import Any

from pllm.bench.lamp import Question
from pllm.bench.tasks.base import Task, profile_size, register_task, size_of, users_rng

FIELDS = {
    "graphs": (["graph neural networks", "message passing", "node classification", "graph attention"],
               ["citation networks", "molecular graphs", "social networks", "knowledge graphs"]),
    "proteins": (["protein folding", "structure prediction", "molecular dynamics", "sequence alignment"],
                 ["enzymes", "antibodies", "membrane proteins", "protein complexes"]),
    "speech": (["speech recognition", "acoustic modelling", "speaker diarization", "voice conversion"],
               ["noisy call centres", "low-resource languages", "children's speech", "meeting recordings"]),
    "compilers": (["compiler optimization", "register allocation", "loop vectorization", "static analysis"],
                  ["embedded systems", "GPU kernels", "JIT runtimes", "WebAssembly"]),
    "climate": (["climate modelling", "precipitation downscaling", "sea ice forecasting", "carbon flux estimation"],
                ["Arctic regions", "monsoon systems", "urban heat islands", "coastal floods"]),
    "quantum": (["quantum error correction", "surface codes", "qubit calibration", "quantum circuits"],
                ["superconducting qubits", "trapped ions", "photonic chips", "noisy devices"]),
}
SCORING = "Write the title of a paper by this author."
GENERIC = ["A simple and effective approach", "Revisiting strong baselines", "Lessons from a large-scale study",
           "Scaling up with fewer resources", "An empirical analysis of design choices", "Efficient methods at scale"]
INSTRUCTION = ('For an author who has written the paper with the title "{title}", which reference is related? Just '
               'answer with [1] or [2] without explanation. [1]: "{one}" [2]: "{two}"')


def _title(rng: Any, field: str) -> str:
    topics, settings = FIELDS[field]
    return rng.choice(["{t} for {s}", "Improving {t} on {s}", "{t}: a study of {s}", "Robust {t} in {s}"]).format(
        t=rng.choice(topics), s=rng.choice(settings))


@register_task
class LaMP1(Task):
    name = "lamp1"
    lamp = "LaMP_1"
    kind = "classification"
    instruction = INSTRUCTION

    def _refs(self, q: Question) -> list[str]:
        return re.findall(r'\[[12]\]: "([^"]*)"', q.input)

    def labels(self, q: Question) -> list[str]:
        return ["[1]", "[2]"]

    def option_texts(self, q: Question) -> list[str]:
        refs = self._refs(q)  # the model judges each reference itself, not the bracketed number
        return refs if len(refs) == 2 else self.labels(q)

    def content(self, q: Question) -> str:
        return " ".join(self._refs(q)) or q.input

    def scoring_text(self, q: Question) -> str:
        # Each reference is scored as "a paper by this author" in the same words as the profile examples.
        return SCORING

    def content_free(self, q: Question) -> str:
        return SCORING

    def item_content(self, item: dict[str, Any]) -> str:
        return f"{item['title']} {item.get('abstract', '')}".strip()

    def item_output(self, item: dict[str, Any]) -> str:
        return str(item["title"])

    def item_text(self, item: dict[str, Any]) -> str:
        return f'"{item["title"]}"'

    def item_as_question(self, item: dict[str, Any], like: Question) -> tuple[str, str]:
        return SCORING, str(item["title"])

    def synthetic(self, seed: int, size: str) -> list[Question]:
        rng = users_rng(seed, self.name)
        users, queries, items = size_of(size)
        fields = sorted(FIELDS)
        out = []
        for u in range(users):
            field = fields[u % len(fields)]
            profile = []
            for n in range(profile_size(rng, items)):
                title = _title(rng, field)
                abstract = f"We study {title.lower()}. Our method improves results on {rng.choice(FIELDS[field][1])}."
                profile.append({"id": f"{u}-{n}", "title": title, "abstract": abstract})
            for k in range(queries):
                mine, other = _title(rng, field), _title(rng, rng.choice([f for f in fields if f != field]))
                first = rng.random() < 0.5
                one, two = (mine, other) if first else (other, mine)
                out.append(Question(id=f"1{u:03d}{k:02d}", profile=profile, user=f"user{u}",
                                    input=INSTRUCTION.format(title=rng.choice(GENERIC), one=one, two=two),
                                    gold="[1]" if first else "[2]"))
        return out
