"""LaMP-4: the headline this user writes for a news article.

Synthetic users are journalists with a house style ("BREAKING: ...", "Why ... matters", "... - here's what we
know"); the article carries the facts, the user's past headlines carry the style.
"""

from __future__ import annotations

import re
from typing import Any

from pllm.bench.lamp import Question
from pllm.bench.tasks.base import Task, profile_size, register_task, size_of, users_rng

INSTRUCTION = "Generate a headline for the following article: "
CITIES = ["Bergen", "Lyon", "Porto", "Leeds", "Graz", "Malmo", "Turin", "Utrecht", "Cork", "Tartu"]
EVENTS = [("council approves", "new library budget"), ("hospital opens", "children's wing"),
          ("port workers end", "week-long strike"), ("city bans", "cars from old town"),
          ("university launches", "free coding school"), ("bakery wins", "national bread prize"),
          ("floods close", "main railway line"), ("startup raises", "funds for electric ferries"),
          ("museum returns", "stolen paintings"), ("zoo welcomes", "twin snow leopards")]
STYLES = ["BREAKING: {k}", "Why {k} matters", "{k} - here's what we know", "{c} news: {k}"]


def _article(rng: Any) -> tuple[str, str, str]:
    city = rng.choice(CITIES)
    verb, obj = rng.choice(EVENTS)
    key = f"{city} {verb} {obj}"
    text = (f"{city} {verb} {obj}, officials said on {rng.choice(['Monday', 'Tuesday', 'Friday'])}. "
            f"Local residents reacted {rng.choice(['warmly', 'with surprise', 'cautiously'])} to the news, "
            f"which follows months of {rng.choice(['debate', 'planning', 'uncertainty'])} in the region.")
    return text, key, city


@register_task
class LaMP4(Task):
    name = "lamp4"
    lamp = "LaMP_4"
    kind = "generation"
    instruction = INSTRUCTION

    def content(self, q: Question) -> str:
        return re.sub(r"^Generate a headline for the following article: ", "", q.input)

    def item_content(self, item: dict[str, Any]) -> str:
        return str(item["text"])

    def item_output(self, item: dict[str, Any]) -> str:
        return str(item["title"])

    def item_text(self, item: dict[str, Any]) -> str:
        return f'"{item["title"]}" is the title for "{item["text"]}"'

    def item_as_question(self, item: dict[str, Any], like: Question) -> tuple[str, str]:
        return INSTRUCTION + str(item["text"]), str(item["title"])

    def synthetic(self, seed: int, size: str) -> list[Question]:
        rng = users_rng(seed, self.name)
        users, queries, items = size_of(size)
        out = []
        for u in range(users):
            style = STYLES[u % len(STYLES)]
            profile = []
            for n in range(profile_size(rng, items)):
                text, key, city = _article(rng)
                profile.append({"id": f"{u}-{n}", "text": text, "title": style.format(k=key, c=city)})
            for k in range(queries):
                text, key, city = _article(rng)
                out.append(Question(id=f"4{u:03d}{k:02d}", input=INSTRUCTION + text, profile=profile,
                                    gold=style.format(k=key, c=city), user=f"user{u}"))
        return out
