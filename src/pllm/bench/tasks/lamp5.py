"""LaMP-5: the title this scholar gives a paper, from its abstract.

Synthetic scholars have a titling habit ("Towards X with Y", "X: a Y approach", "On Y for X", "Y for X"): the
abstract names the method and the problem, the user's past titles show how they put them together.
"""

from __future__ import annotations

from typing import Any

from pllm.bench.lamp import Question
from pllm.bench.tasks.base import Task, profile_size, register_task, size_of, users_rng

INSTRUCTION = "Generate a title for the following abstract of a paper: "
METHODS = ["contrastive pretraining", "sparse attention", "curriculum learning", "graph transformers",
           "diffusion models", "low-rank adaptation", "active learning", "knowledge distillation"]
PROBLEMS = ["protein design", "legal document search", "crop yield forecasting", "code completion",
            "medical image segmentation", "speech translation", "fraud detection", "weather nowcasting"]
STYLES = ["Towards {P} with {M}", "{P}: a {M} approach", "On {M} for {P}", "{M} for {P}"]


def _abstract(rng: Any) -> tuple[str, str, str]:
    method, problem = rng.choice(METHODS), rng.choice(PROBLEMS)
    text = (f"We study {problem}. We propose a method based on {method} and evaluate it on "
            f"{rng.choice(['three', 'four', 'five'])} public benchmarks, where it improves over strong baselines "
            f"by {rng.randint(2, 9)} points.")
    return text, method, problem


def _title(style: str, method: str, problem: str) -> str:
    title = style.format(M=method, P=problem)
    return title[0].upper() + title[1:]


@register_task
class LaMP5(Task):
    name = "lamp5"
    lamp = "LaMP_5"
    kind = "generation"
    instruction = INSTRUCTION

    def content(self, q: Question) -> str:
        return q.input[len(INSTRUCTION):] if q.input.startswith(INSTRUCTION) else q.input

    def item_content(self, item: dict[str, Any]) -> str:
        return str(item["abstract"])

    def item_output(self, item: dict[str, Any]) -> str:
        return str(item["title"])

    def item_text(self, item: dict[str, Any]) -> str:
        return f'"{item["title"]}" is the title for "{item["abstract"]}"'

    def item_as_question(self, item: dict[str, Any], like: Question) -> tuple[str, str]:
        return INSTRUCTION + str(item["abstract"]), str(item["title"])

    def synthetic(self, seed: int, size: str) -> list[Question]:
        rng = users_rng(seed, self.name)
        users, queries, items = size_of(size)
        out = []
        for u in range(users):
            style = STYLES[u % len(STYLES)]
            profile = []
            for n in range(profile_size(rng, items)):
                text, method, problem = _abstract(rng)
                profile.append({"id": f"{u}-{n}", "abstract": text, "title": _title(style, method, problem)})
            for k in range(queries):
                text, method, problem = _abstract(rng)
                out.append(Question(id=f"5{u:03d}{k:02d}", input=INSTRUCTION + text, profile=profile,
                                    gold=_title(style, method, problem), user=f"user{u}"))
        return out
