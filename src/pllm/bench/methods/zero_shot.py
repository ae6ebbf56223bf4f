"""none: the base model, zero-shot, nothing from the user (the non-personalized reference)."""

from __future__ import annotations

from pllm.bench.lamp import Question
from pllm.bench.methods.base import Method, choose_label, register_method, write_answer


@register_method
class ZeroShot(Method):
    name = "none"

    def predict(self, q: Question) -> str:
        if self.task.kind == "generation":
            return write_answer(self.env, q, [])
        return choose_label(self.env, q, [])
