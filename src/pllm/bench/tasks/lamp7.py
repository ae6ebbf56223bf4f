"""LaMP-7: this user's own paraphrase of a tweet.

Synthetic users tweet with a fixed voice (an opener and a sign-off of their own, like "ugh, ... #mondays" or
"honestly ... lol"); the query is a plain tweet, the gold is that tweet in the user's voice.
"""

from __future__ import annotations

from typing import Any

from pllm.bench.lamp import Question
from pllm.bench.tasks.base import Task, profile_size, register_task, size_of, users_rng

INSTRUCTION = "Paraphrase the following tweet without any explanation before or after it: "
EVENTS = ["the train was late again this morning", "just finished a long run by the river",
          "the new cafe downtown makes great coffee", "my laptop died in the middle of a meeting",
          "it is finally snowing outside", "I cooked pasta for ten people tonight", "the concert last night was loud",
          "my plants are growing so fast", "I lost my keys for the third time this week", "the sunset was pink today"]
VOICES = [("ugh, {e} #mondays", "ugh"), ("honestly {e} lol", "lol"), ("{e}!!! so grateful #blessed", "blessed"),
          ("update from me: {e}. more soon", "update")]


@register_task
class LaMP7(Task):
    name = "lamp7"
    lamp = "LaMP_7"
    kind = "generation"
    instruction = INSTRUCTION
    augmentable = "tweets"

    def item_content(self, item: dict[str, Any]) -> str:
        return str(item["text"])

    def item_output(self, item: dict[str, Any]) -> str:
        return str(item["text"])

    def item_text(self, item: dict[str, Any]) -> str:
        return f'"{item["text"]}"'

    def item_from(self, content: str, output: str | None) -> dict[str, Any]:
        return {"text": content}

    def item_as_question(self, item: dict[str, Any], like: Question) -> tuple[str, str]:
        plain = str(item.get("plain") or item["text"])
        return INSTRUCTION + plain, str(item["text"])

    def synthetic(self, seed: int, size: str) -> list[Question]:
        rng = users_rng(seed, self.name)
        users, queries, items = size_of(size)
        out = []
        for u in range(users):
            voice = VOICES[u % len(VOICES)][0]
            profile = []
            for n in range(profile_size(rng, items)):
                event = rng.choice(EVENTS)
                profile.append({"id": f"{u}-{n}", "text": voice.format(e=event), "plain": event[0].upper() + event[1:]})
            for k in range(queries):
                event = rng.choice(EVENTS)
                out.append(Question(id=f"7{u:03d}{k:02d}", input=INSTRUCTION + event[0].upper() + event[1:] + ".",
                                    profile=profile, gold=voice.format(e=event), user=f"user{u}"))
        return out
