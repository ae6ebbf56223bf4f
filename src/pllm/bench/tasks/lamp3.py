"""LaMP-3: the 1-5 score this user gives a product review they wrote.

Synthetic users share review texts of the same tone but score them with their own bias: a harsh user gives 2 where
a generous one gives 5 for the same lukewarm words, so the review text alone cannot tell the score.
"""

from __future__ import annotations

import re
from typing import Any

from pllm.bench.lamp import Question
from pllm.bench.tasks.base import Task, profile_size, register_task, size_of, users_rng

INSTRUCTION = ("What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 "
               "without further explanation. review: ")
PRODUCTS = ["blender", "headphones", "backpack", "desk lamp", "coffee grinder", "phone case", "kettle", "keyboard",
            "water bottle", "rain jacket", "toaster", "yoga mat"]
# tone 1 (negative) .. 3 (lukewarm) .. 5 (glowing); most reviews are lukewarm-ish, where bias decides
TONES = {
    2: ["The {p} works, but it feels cheaper than I expected.", "Not great, not terrible: the {p} is a bit flimsy.",
        "The {p} does the job, though I had a few small issues."],
    3: ["The {p} is fine. It does what it says.", "An okay {p} for the price, nothing special.",
        "The {p} arrived on time and works as described."],
    4: ["Pretty good {p}, I use it every day.", "The {p} is solid and well made, a good buy.",
        "I like this {p}; it works well most of the time."],
}
BIASES = {"harsh": -1, "fair": 0, "generous": 1, "extreme": 0}


def _score(tone: int, bias: str) -> int:
    if bias == "extreme":
        return 1 if tone <= 2 else 5 if tone >= 4 else 4
    return max(1, min(5, tone + BIASES[bias]))


@register_task
class LaMP3(Task):
    name = "lamp3"
    lamp = "LaMP_3"
    kind = "rating"
    instruction = INSTRUCTION
    augmentable = "product reviews, each with the 1-5 score its writer gave"

    def labels(self, q: Question) -> list[str]:
        return ["1", "2", "3", "4", "5"]

    def content(self, q: Question) -> str:
        match = re.search(r"(?:review|movie): (.*)$", q.input, re.S)
        return match.group(1).strip() if match else q.input

    def item_content(self, item: dict[str, Any]) -> str:
        return str(item["text"])

    def item_output(self, item: dict[str, Any]) -> str:
        return str(item["score"])

    def item_text(self, item: dict[str, Any]) -> str:
        return f'{self.item_output(item)} is the score for "{self.item_content(item)}"'

    def item_from(self, content: str, output: str | None) -> dict[str, Any]:
        return {"text": content, "score": output}


    def synthetic(self, seed: int, size: str) -> list[Question]:
        rng = users_rng(seed, self.name)
        users, queries, items = size_of(size)
        out = []
        for u in range(users):
            bias = list(BIASES)[u % len(BIASES)]

            def review() -> tuple[str, int]:
                tone = rng.choice([2, 3, 3, 4])
                return rng.choice(TONES[tone]).format(p=rng.choice(PRODUCTS)), tone

            profile = []
            for n in range(profile_size(rng, items)):
                text, tone = review()
                profile.append({"id": f"{u}-{n}", "text": text, "score": str(_score(tone, bias))})
            for k in range(queries):
                text, tone = review()
                out.append(Question(id=f"3{u:03d}{k:02d}", input=INSTRUCTION + text, profile=profile,
                                    gold=str(_score(tone, bias)), user=f"user{u}"))
        return out
