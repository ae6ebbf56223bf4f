"""Small text helpers shared by the profile, retrieval, ingest and the gate: words, stopwords, a light stemmer,
packing pieces of text into chunks."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

WORD = re.compile(r"[a-z][a-z'-]+")

STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers him
his how i if in into is it its itself just me more most my myself no nor not now of off on once only or other our
ours out over own same she should so some such than that the their them then there these they this those through to
too under until up very was we were what when where which while who whom why will with would you your yours
yourself yes okay ok really much many get got make made know think want need going went one two still even well back
way thing things something anything everything please thanks thank tell""".split())

# Words that say how a fact is phrased rather than what it is about: no use as a topic.
TOPIC_STOPWORDS = STOPWORDS | frozenset("""called named live lives living work works working like likes love loves
today tomorrow yesterday day days time write wrote""".split())


def light_stem(word: str) -> str:
    """Fold plural and -ing/-ed endings so 'cats' meets 'cat' (no stemming library needed)."""
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: len(word) - len(suffix)] + keep
    return word


def content_words(text: str) -> list[str]:
    return [w for w in WORD.findall(text.lower()) if w not in STOPWORDS]


class LightStemmer:
    """light_stem in the shape bm25s expects of a stemmer object (PyStemmer's `stemWords`)."""

    def stemWords(self, words: list[str]) -> list[str]:
        return [light_stem(w) for w in words]


def is_degenerate(text: str) -> bool:
    """An answer that is no memory of anything: empty, or mostly one phrase repeated ("A: A: A: A:").

    A small model sometimes loops; such an answer must never be retrieved as what the user said.
    """
    tokens = text.split()
    if not any(ch.isalnum() for ch in text):
        return True
    if len(tokens) < 6:
        return len(tokens) >= 3 and len(set(tokens)) == 1  # "no no no"
    if len(set(tokens)) / len(tokens) < 0.3:
        return True
    for n in (1, 2, 3, 4):  # a repeated n-gram covering most of the text
        grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        top = max(grams.count(g) for g in set(grams))
        if top >= 3 and top * n / len(tokens) > 0.5:
            return True
    return False


def packed(parts: Iterable[str], fits: Callable[[str], bool]) -> list[str]:
    """`parts` joined by spaces, in order, into as few strings as `fits` allows (a part that fits nowhere stands
    alone): sentences into chunks, words of an over-long sentence into pieces."""
    out, current = [], ""
    for part in parts:
        if current and not fits(f"{current} {part}"):
            out.append(current)
            current = part
        else:
            current = f"{current} {part}".strip()
    return [*out, current] if current else out
