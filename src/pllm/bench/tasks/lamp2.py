"""LaMP-2 (movies): which of 15 tags does this user give a movie, from its description.

Synthetic users each have their own tag for each kind of movie (one calls every dystopia "sci-fi", another
"dark comedy"), applied with 90% consistency; queries are new movies of kinds the user has tagged before.
"""

from __future__ import annotations

import re
from typing import Any

from pllm.bench.lamp import Question
from pllm.bench.tasks.base import Task, profile_size, register_task, size_of, users_rng

TAGS = ["sci-fi", "based on a book", "comedy", "action", "twist ending", "dystopia", "dark comedy", "classic",
        "psychology", "fantasy", "romance", "thought-provoking", "social commentary", "violence", "true story"]

# kind of movie -> (description templates, tags a person might plausibly give it)
KINDS: dict[str, tuple[list[str], list[str]]] = {
    "dystopia": (["In a future where {power} controls every {thing}, a {hero} starts to question the system.",
                  "A {hero} living under a regime that bans {thing} joins a secret resistance."],
                 ["dystopia", "sci-fi", "social commentary", "thought-provoking", "dark comedy"]),
    "space": (["A crew of astronauts aboard the {ship} finds {mystery} near a distant planet.",
               "Stranded on a space station, a {hero} must repair the {ship} before oxygen runs out."],
              ["sci-fi", "action", "thought-provoking", "twist ending"]),
    "heist": (["A gang of thieves plans to rob {place}, but one of them is hiding a secret.",
               "A retired {hero} is pulled back for one last job: emptying the vault of {place}."],
              ["action", "twist ending", "comedy", "violence"]),
    "romance": (["Two strangers meet in {place} and fall in love despite {obstacle}.",
                 "A {hero} writes letters to a stranger in {place} and slowly falls in love."],
                ["romance", "comedy", "classic", "based on a book"]),
    "magic": (["A young {hero} discovers magical powers and must defeat {villain}.",
               "An apprentice {hero} steals a spellbook and unleashes {villain} on the kingdom."],
              ["fantasy", "based on a book", "action", "classic"]),
    "mind": (["A troubled {hero} starts seeing a therapist and begins to doubt every memory.",
              "After an accident, a {hero} wakes up unsure which of their memories are real."],
             ["psychology", "twist ending", "thought-provoking", "dark comedy"]),
    "war": (["During the war, a {hero} leads a small unit behind enemy lines near {place}.",
             "The story of a {hero} who hid refugees in {place} during the war."],
            ["true story", "violence", "action", "classic"]),
    "satire": (["A clueless {hero} accidentally becomes president, with absurd results for {place}.",
                "A {hero} at a giant company in {place} exposes how ridiculous the office has become."],
               ["comedy", "dark comedy", "social commentary", "thought-provoking"]),
}
FILL = {
    "power": ["a tech company", "the state", "an AI", "a council of elders"],
    "thing": ["thought", "book", "memory", "song", "dream"],
    "hero": ["teacher", "pilot", "nurse", "clerk", "student", "detective", "farmer", "engineer"],
    "ship": ["Odyssey", "Perihelion", "Nomad", "Aurora"],
    "mystery": ["an alien signal", "a derelict ship", "a frozen ocean", "a second sun"],
    "place": ["Monte Carlo", "a small Italian town", "Berlin", "the casino", "a lighthouse", "Lisbon", "the museum"],
    "obstacle": ["a family feud", "a war", "a long distance", "a secret engagement"],
    "villain": ["an ancient dragon", "a shadow king", "a cursed sorcerer", "a witch"],
}
INSTRUCTION = ("Which tag does this movie relate to among the following tags? Just answer with the tag name without "
               "further explanation. tags: [{tags}] description: ")


def _describe(rng: Any, kind: str) -> str:
    template = rng.choice(KINDS[kind][0])
    return re.sub(r"\{(\w+)\}", lambda m: rng.choice(FILL[m.group(1)]), template)


@register_task
class LaMP2(Task):
    name = "lamp2"
    lamp = "LaMP_2"
    kind = "classification"
    instruction = INSTRUCTION
    augmentable = "movie descriptions, each with the tag this person gave the movie"

    def labels(self, q: Question) -> list[str]:
        match = re.search(r"(?:tags|categories): \[([^\]]*)\]", q.input)
        return [t.strip() for t in match.group(1).split(",")] if match else list(TAGS)

    def content(self, q: Question) -> str:
        match = re.search(r"(?:description|article): (.*)$", q.input, re.S)
        return match.group(1).strip() if match else q.input

    def item_content(self, item: dict[str, Any]) -> str:
        return str(item.get("description") or item.get("text") or "")

    def item_output(self, item: dict[str, Any]) -> str:
        return str(item.get("tag") or item.get("category") or "")

    def item_from(self, content: str, output: str | None) -> dict[str, Any]:
        return {"description": content, "tag": output}

    def item_text(self, item: dict[str, Any]) -> str:
        return f'the tag for the movie: "{self.item_content(item)}" is "{self.item_output(item)}"'


    def synthetic(self, seed: int, size: str) -> list[Question]:
        rng = users_rng(seed, self.name)
        users, queries, items = size_of(size)
        prefix = INSTRUCTION.format(tags=", ".join(TAGS))
        out = []
        for u in range(users):
            taste = {kind: rng.choice(tags) for kind, (_, tags) in KINDS.items()}
            kinds = rng.sample(sorted(KINDS), 4)  # each user watches four kinds of movie
            weights = [rng.uniform(0.5, 2.0) for _ in kinds]

            profile = []
            for n in range(profile_size(rng, items)):
                kind = rng.choices(kinds, weights)[0]
                # people are not perfectly consistent: one tag in ten is another plausible one
                tag = taste[kind] if rng.random() < 0.9 else rng.choice(KINDS[kind][1])
                profile.append({"id": f"{u}-{n}", "description": _describe(rng, kind), "tag": tag,
                                "date": f"2024-{1 + n % 12:02d}-{1 + n % 28:02d}"})
            for k in range(queries):
                kind = rng.choices(kinds, weights)[0]
                out.append(Question(id=f"2{u:03d}{k:02d}", input=prefix + _describe(rng, kind), profile=profile,
                                    gold=taste[kind], user=f"user{u}"))
        return out
