"""LaMP-4: the headline this user writes for a news article.

Synthetic users are journalists with a house style ("BREAKING: ...", "Why ... matters", "... - here's what we
know"); the article carries the facts, the user's past headlines carry the style.
"""

from __future__ import annotations

import random
from typing import Any

from pllm.bench.tasks.base import TitleTask, register_task

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
class LaMP4(TitleTask):
    name = "lamp4"
    lamp = "LaMP_4"
    instruction = INSTRUCTION
    content_field = "text"
    styles = STYLES

    def sample(self, rng: random.Random, style: str) -> tuple[str, str]:
        text, key, city = _article(rng)
        return text, style.format(k=key, c=city)
