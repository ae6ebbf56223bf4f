"""The user profiling layer (ASLS): from the user's texts, interactions and feedback, a profile and its summary.

- facts the user stated ("my cat is called Pixel" -> cat name: Pixel), by patterns, and by the model itself with
  every value checked against the text it came from (a 135M model invents otherwise);
- topics and how often they come up, with time decay (half-life 30 days);
- style: message length, formality, emoji, and the answer length the user prefers (from their edits);
- feedback statistics, and the user's mood over time (sentiment of their messages).

`build_profile(vault)` computes it; `Profile.summary()` is the short text that goes into prompts.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pllm.lm.runtime import GenerationConfig
from pllm.personal.items import VOICE_KIND, Document, Fact, Interaction
from pllm.personal.text import STOPWORDS, TOPIC_STOPWORDS, WORD
from pllm.personal.vault import Vault

if TYPE_CHECKING:
    from pllm.lm.runtime import Runtime

HALF_LIFE_DAYS = 30.0

_NAME = r"(?P<value>[A-Z][\w'-]+(?: [A-Z][\w'-]+){0,2})"
_PHRASE = r"(?P<value>[\w' -]{2,40}?)(?=[.,;!?]|$| and | but )"
FACT_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Names must start with a capital, so only the lead-in words are case-insensitive.
    (re.compile(r"\b(?i:my name is) " + _NAME), "name"),
    (re.compile(r"\b(?i:my) (?P<thing>[a-z]+(?: [a-z]+)?) (?i:is|'s) (?i:called|named) " + _NAME), "{thing} name"),
    (re.compile(r"\b(?i:my) (?P<thing>wife|husband|partner|son|daughter|mother|father|mum|mom|dad|brother|sister|"
                r"dog|cat|boss)(?:'s name)? is " + _NAME), "{thing} name"),
    (re.compile(r"\bI live in " + _NAME), "lives in"),
    (re.compile(r"\bI(?: am|'m) from " + _NAME), "from"),
    (re.compile(r"\bI work (?:as an?|as) " + _PHRASE, re.I), "works as"),
    (re.compile(r"\bI work (?:at|for) " + _PHRASE, re.I), "works at"),
    (re.compile(r"\bI(?: am|'m) allergic to " + _PHRASE, re.I), "allergic to"),
    (re.compile(r"\bmy birthday is (?:on )?" + _PHRASE, re.I), "birthday"),
    (re.compile(r"\bmy favou?rite (?P<thing>[a-z]+(?: [a-z]+)?) is " + _PHRASE, re.I), "favourite {thing}"),
    (re.compile(r"\bI (?:really )?(?:love|like|enjoy) " + _PHRASE, re.I), "likes {value}"),
]

POSITIVE = frozenset("""good great love loved lovely happy glad excellent amazing awesome wonderful nice fantastic enjoy
enjoyed fun perfect best beautiful excited thanks thank brilliant delighted pleased cool calm proud grateful""".split())
NEGATIVE = frozenset("""bad terrible awful hate hated sad angry upset annoyed tired worst horrible poor wrong stressed
worried anxious sick hurt broken boring disappointed frustrated lonely afraid scared cry pain""".split())
NEGATIONS = frozenset("not no never don't doesn't didn't isn't wasn't can't won't".split())
EMOJI = re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF]")


def sentiment(text: str) -> float:
    """Lexicon sentiment in [-1, 1] with one-word negation ("not happy" counts as negative)."""
    words = WORD.findall(text.lower())
    score = 0
    for i, w in enumerate(words):
        polarity = (w in POSITIVE) - (w in NEGATIVE)
        if polarity and i > 0 and words[i - 1] in NEGATIONS:
            polarity = -polarity
        score += polarity
    hits = sum(1 for w in words if w in POSITIVE or w in NEGATIVE)
    return 0.0 if hits == 0 else max(-1.0, min(1.0, score / hits))


KEY_SPELLINGS = {"favorite": "favourite", "color": "colour", "mom": "mother", "mum": "mother", "dad": "father",
                 "hubby": "husband"}
# A value that opens with one of these is a clause cut out of a sentence, not a thing ("likes how it's both a").
FRAGMENT_OPENERS = frozenset("""how that what when where why which who whom whose it it's its this these those to
being doing because if so than then there they them he she him her his hers we our you your the a an of and or but
with about for""".split())


def normalise_key(key: str) -> str:
    """One spelling per fact key: lower case, single spaces, British spellings, mother/father for mum/dad."""
    return " ".join(KEY_SPELLINGS.get(w, w) for w in key.lower().split())


def is_fragment(value: str) -> bool:
    """A clause fragment rather than a value: opens with a function word, ends on one, or says nothing."""
    words = value.lower().split()
    if not words or all(w in STOPWORDS for w in words):
        return True
    return words[0] in FRAGMENT_OPENERS or words[-1] in FRAGMENT_OPENERS or len(words) > 6


def extract_facts(text: str) -> list[tuple[str, str]]:
    """(key, value) facts stated in `text` by first-person patterns, fragments and repeats dropped."""
    found: dict[str, str] = {}
    for pattern, key_template in FACT_PATTERNS:
        for m in pattern.finditer(text):
            value = m.group("value").strip(" '")
            if is_fragment(value):
                continue
            groups = {k: v.lower().strip() for k, v in m.groupdict().items() if v}
            found[normalise_key(key_template.format(**groups))] = value  # restated in the same text: the last
    return list(found.items())


MODEL_FACT_PROMPT = """Extract personal facts the writer states about themselves, one per line as "key: value".
Text: My dog is called Rex and I work as a teacher.
Facts:
dog name: Rex
works as: teacher
Text: {text}
Facts:
"""


def extract_facts_with_model(runtime: Runtime, text: str, *, max_tokens: int = 48) -> list[tuple[str, str]]:
    """Ask the model for "key: value" facts; keep only values that occur in the text (no invented facts)."""
    reply = runtime.complete(MODEL_FACT_PROMPT.format(text=" ".join(text.split())[:600]),
                             GenerationConfig(max_tokens=max_tokens, stop=("\nText:", "\n\n"))).text
    facts = []
    lowered = text.lower()
    for line in reply.splitlines():
        key, sep, value = line.partition(":")
        key, value = normalise_key(key), value.strip().strip(".")
        if sep and 1 < len(key) <= 30 and 1 < len(value) <= 40 and value.lower() in lowered and not is_fragment(value):
            facts.append((key, value))
    return list(dict.fromkeys(facts))  # a small model repeats itself


def learn_facts(vault: Vault, text: str, *, source: str, runtime: Runtime | None = None, subject: str = "",
                stated_at: float | None = None) -> list[tuple[str, str]]:
    """Store the facts stated in `text` as facts about whoever said it (`subject`, '' for the user), dated when
    said: pattern facts at confidence 0.9, model facts at 0.6."""
    facts = [(k, v, 0.9) for k, v in extract_facts(text)]
    if runtime is not None and re.search(r"\b(I|my|I'm|me)\b", text):
        known = {k for k, _, _ in facts}
        facts += [(k, v, 0.6) for k, v in extract_facts_with_model(runtime, text) if k not in known]
    for key, value, confidence in facts:
        vault.upsert_fact(key, value, source=source, confidence=confidence, subject=subject, stated_at=stated_at)
    return [(k, v) for k, v, _ in facts]


@dataclass
class Style:
    words_per_message: float | None = None
    words_per_sentence: float | None = None
    formality: float | None = None  # 0 casual .. 1 formal
    emoji_per_message: float = 0.0
    preferred_answer_words: int | None = None  # from the user's edits

    def describe(self) -> str:
        parts = []
        if self.words_per_message is not None:
            parts.append("writes briefly" if self.words_per_message < 40 else "writes at length")
        if self.formality is not None:
            parts.append("formal" if self.formality > 0.6 else "casual" if self.formality < 0.4 else "neutral tone")
        if self.emoji_per_message >= 0.3:
            parts.append("uses emoji")
        if self.preferred_answer_words is not None:
            parts.append(f"prefers answers of about {self.preferred_answer_words} words")
        return ", ".join(parts)


@dataclass
class Profile:
    name: str
    facts: list[Fact]
    topics: list[tuple[str, float]]  # (topic, decayed frequency)
    style: Style
    feedback: dict[str, Any]
    mood: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)
    others: list[Fact] = field(default_factory=list)  # what other people said about themselves (imported chats)
    voice: dict[str, Any] = field(default_factory=dict)  # how often, and when, the user speaks rather than types

    @property
    def speaks(self) -> bool:
        """Most of the user's recent requests are spoken (at least three): answers should read aloud well."""
        return bool(self.voice.get("spoken", 0) >= 3 and (self.voice.get("share") or 0) >= 0.5)

    def summary(self, max_facts: int = 8, max_topics: int = 5) -> str:
        """The short profile text that goes into prompts."""
        lines = []
        if self.name:
            # "The user's name is X" makes the 135M model introduce itself as X; this phrasing does not.
            lines.append(f"You are helping {self.name}.")
        facts = sorted(self.facts, key=lambda f: (-f.confidence, -f.updated_at))[:max_facts]
        if facts:
            lines.append("Known about the user: " + "; ".join(f"{f.key}: {f.value}" for f in facts) + ".")
        people = sorted(self.others, key=lambda f: -f.updated_at)[:max_facts // 2]
        if people:
            lines.append("Known about others: " + "; ".join(f"{f.subject}'s {f.key}: {f.value}" for f in people) + ".")
        if self.topics:
            lines.append("Interests: " + ", ".join(t for t, _ in self.topics[:max_topics]) + ".")
        style = self.style.describe()
        if style:
            lines.append(f"Style: {style}.")
        if self.speaks:
            lines.append("Often speaks to you rather than types: keep answers short and easy to say aloud.")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "facts": [asdict(f) for f in self.facts],
            "others": [asdict(f) for f in self.others],
            "topics": [{"topic": t, "weight": round(w, 3)} for t, w in self.topics],
            "style": asdict(self.style),
            "feedback": self.feedback,
            "mood": self.mood,
            "counts": self.counts,
            "voice": self.voice,
            "summary": self.summary(),
        }


def _decay(age_seconds: float) -> float:
    return math.pow(0.5, max(0.0, age_seconds) / (HALF_LIFE_DAYS * 86400))


def _topics(texts: list[tuple[str, float]], now: float, top: int = 10) -> list[tuple[str, float]]:
    weights: defaultdict[str, float] = defaultdict(float)
    for text, created in texts:
        w = _decay(now - created)
        for word in set(WORD.findall(text.lower())):
            if len(word) >= 4 and word not in TOPIC_STOPWORDS:
                weights[word] += w
    ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [(word, weight) for word, weight in ranked if weight > 0.05]


def _style(messages: list[str], edits: list[tuple[str, str]]) -> Style:
    if not messages:
        return Style()
    words = [len(m.split()) for m in messages]
    sentences = [max(1, len(re.findall(r"[.!?]+(?:\s|$)", m))) for m in messages]
    casual = sum(len(re.findall(r"\b\w+'(?:s|re|m|ll|ve|t|d)\b|!|\blol\b|\bgonna\b|\bhey\b", m, re.I))
                 for m in messages)
    casual_rate = casual / max(1, sum(words))
    style = Style(
        words_per_message=round(statistics.mean(words), 1),
        words_per_sentence=round(sum(words) / sum(sentences), 1),
        formality=round(max(0.0, min(1.0, 1 - casual_rate * 8)), 2),
        emoji_per_message=round(sum(len(EMOJI.findall(m)) for m in messages) / len(messages), 2),
    )
    if edits:
        style.preferred_answer_words = int(statistics.median(len(new.split()) for _, new in edits))
    return style


def build_profile(vault: Vault, *, now: float | None = None, texts_before: float | None = None) -> Profile:
    """The profile as of `now`; `texts_before` leaves later documents and messages out of interests and style."""
    now = now if now is not None else time.time()
    docs = vault.documents()
    interactions = vault.interactions()
    if texts_before is not None:
        docs = [d for d in docs if d.created_at < texts_before]
        interactions = [i for i in interactions if i.created_at < texts_before]
    feedback = vault.feedback()
    facts = vault.facts()
    by_id = {i.id: i for i in interactions}
    edits = [(by_id[f.interaction_id].answer, f.value or "") for f in feedback
             if f.kind == "edit" and f.interaction_id in by_id]
    own_texts = ([(d.content, d.created_at) for d in docs if not d.speaker]  # others' words are not the user's style
                 + [(i.prompt, i.created_at) for i in interactions])
    kinds = Counter(f.kind for f in feedback)
    ratings = [int(f.value) for f in feedback if f.kind == "rating" and f.value]
    votes = kinds["up"] + kinds["down"]
    mood_by_day: dict[str, list[float]] = defaultdict(list)
    for i in interactions:
        mood_by_day[time.strftime("%Y-%m-%d", time.localtime(i.created_at))].append(i.sentiment)
    recent = [i.sentiment for i in interactions if now - i.created_at < 7 * 86400]
    return Profile(
        name=vault.user_name,
        facts=[f for f in facts if not f.subject],
        others=[f for f in facts if f.subject],
        topics=_topics(own_texts, now),
        style=_style([t for t, _ in own_texts], edits),
        feedback={
            "up": kinds["up"], "down": kinds["down"], "edit": kinds["edit"], "regenerate": kinds["regenerate"],
            "ratings": len(ratings), "mean_rating": round(statistics.mean(ratings), 2) if ratings else None,
            "approval": round(kinds["up"] / votes, 3) if votes else None,
        },
        mood={
            "recent": round(statistics.mean(recent), 3) if recent else None,
            "by_day": {day: round(statistics.mean(v), 3) for day, v in sorted(mood_by_day.items())[-30:]},
        },
        counts={"documents": len(docs), "interactions": len(interactions), "feedback": len(feedback)},
        voice=_voice(interactions, docs, now),
    )


VOICE_WINDOW_S = 30 * 86400  # how the user talks to pllm now: the last 30 days


def _voice(interactions: list[Interaction], docs: list[Document], now: float) -> dict[str, Any]:
    """Speaking against typing over the last 30 days: counts, the spoken share, the hours the user speaks most,
    and the voice memos held."""
    recent = [i for i in interactions if now - i.created_at < VOICE_WINDOW_S]
    spoken = [i for i in recent if i.modality == VOICE_KIND]
    hours = Counter(i.hour for i in spoken).most_common(3)
    return {"spoken": len(spoken), "typed": len(recent) - len(spoken),
            "share": round(len(spoken) / len(recent), 3) if recent else None,
            "hours": [hour for hour, _ in hours], "memos": sum(1 for d in docs if d.kind == VOICE_KIND)}


PROMPT_PROFILE_REFRESH_S = 3600


def prompt_summary(vault: Vault, *, now: float | None = None) -> str:
    """The profile summary as prompts carry it: facts as they are now, interests and style as of the start of the
    hour. A message changes the topic counts, and the summary heads every prompt: were it rebuilt per message, the
    runtime could never reuse the system turn's KV state (seconds of prompt processing per request)."""
    now = now if now is not None else time.time()
    as_of = now - now % PROMPT_PROFILE_REFRESH_S
    return build_profile(vault, now=as_of, texts_before=as_of).summary()
