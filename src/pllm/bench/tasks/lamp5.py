"""LaMP-5: the title this scholar gives a paper, from its abstract.

Synthetic scholars have a titling habit ("Towards X with Y", "X: a Y approach", "On Y for X", "Y for X"): the
abstract names the method and the problem, the user's past titles show how they put them together.
"""

from __future__ import annotations

import random
from typing import Any

from pllm.bench.tasks.base import TitleTask, register_task

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
class LaMP5(TitleTask):
    name = "lamp5"
    lamp = "LaMP_5"
    instruction = INSTRUCTION
    content_field = "abstract"
    styles = STYLES

    def sample(self, rng: random.Random, style: str) -> tuple[str, str]:
        text, method, problem = _abstract(rng)
        return text, _title(style, method, problem)
