"""Telling names from words: the rules the privacy gate (`privacy.py`) runs on spaCy's parse after NER.

The small NER model misses names it does not know ("climbing with Yusuf", "ask siobhan if kwame ..."), and takes
words for names ("Rose bushes", "Password reset link", "the Amazon parcel"). These rules look at each token where it
stands: whether it opens a sentence, what verb or article is around it, whether Webster's knows it as a word, how
often it is written (wordfreq), and the census's first names (`pii.py`).
"""

from __future__ import annotations

import re
from typing import Any

from pllm.personal.pii import (
    CALENDAR_WORDS,
    KINSHIP_WORDS,
    NAME_PARTICLES,
    NOT_NAMES,
    RARE_WORD_ZIPF,
    Span,
    first_names,
    is_common_word,
    is_dictionary_word,
    is_foreign_word,
    is_listed_name,
    opens_sentence,
    word_zipf,
)

# What spaCy tags as these is no name ("this Summer", "at noon"). Its titles and events are guesses that are often
# names ("with Yusuf" a WORK_OF_ART): there a proper noun is a name only if it is no English word ("Left Hand").
NOT_NAME_ENTITIES = frozenset("DATE TIME CARDINAL ORDINAL MONEY PERCENT QUANTITY".split())
GUESSED_ENTITIES = frozenset("WORK_OF_ART EVENT LAW".split())


def find_names(text: str, tokens: Any, typed: list[Span]) -> list[Span]:
    """The names in `text`: NER's `typed` spans less the words it took for names, and the names it left untyped
    (see the module docstring), names that touch joined, names coordinated with a name added."""
    spans = list(typed)
    lower_case: list[Span] = []  # names found by where they stand, kept though Webster's knows the word
    for t in tokens:
        if not t.text.isalpha() or t.text in NOT_NAMES or any(s.start <= t.idx < s.end for s in typed):
            continue
        if _named_by_its_sentence(t) or (is_listed_name(t.text, sentence_start=_opens_sentence(t))
                                         and (t.ent_type_ not in NOT_NAME_ENTITIES or _not_a_time(t))):
            spans.append(Span(t.idx, t.idx + len(t.text), "PERSON", "ner"))  # "Hope", "ingrid", "Will and I"
        elif ((t.ent_type_ not in NOT_NAME_ENTITIES and _untyped_name(t, titled=t.ent_type_ in GUESSED_ENTITIES))
              or _name_in_capitals(t.text)):
            spans.append(Span(t.idx, t.idx + len(t.text), "NAME", "ner"))
        elif t.ent_type_ not in NOT_NAME_ENTITIES and _lower_case_name(t):
            lower_case.append(Span(t.idx, t.idx + len(t.text), "PERSON", "ner"))  # words by their place
    names = _joined_names(text, [s for s in spans if s.source == "ner" and not _word_taken_for_a_name(text, s)]
                          + lower_case)
    return _coordinated_names(tokens, names)


def _opens_sentence(token: Any) -> bool:
    """Whether the token opens a sentence (`pii.opens_sentence`; the parser's own guess also opens one after a
    postcode: "10435 Berlin")."""
    return opens_sentence(token.doc.text, token.idx)


def _named_by_its_sentence(token: Any) -> bool:
    """A name that is also a word, opening a sentence, where what follows makes it a person: a possessive
    ("Amber's hen do"), "and I" ("Will and I"), "from the" ("June from the choir"), a verb in the past or the third
    person ("Hope called"), or a form of be/have before a participle ("Summer is collecting"). "Summer is my
    favourite season", "Rose bushes need pruning" and "Mark the calendar" stay words."""
    text = token.text
    if not (_opens_sentence(token) and text[:1].isupper() and text[1:].islower()
            and text.lower() in first_names() and is_dictionary_word(text)):
        return False
    doc = token.doc
    after = [t for t in doc[token.i + 1: token.i + 3]]
    if not after:
        return False
    first = after[0]
    second = after[1] if len(after) > 1 else None
    if first.text in ("'s", "’s") or first.lower_ == "from":
        return True
    if first.lower_ == "and" and second is not None and second.lower_ in ("i", "me", "we"):
        return True
    if first.lemma_ in ("be", "have") and second is not None:
        return second.tag_ in ("VBG", "VBN")
    return first.tag_ in ("VBD", "VBZ") and first.pos_ == "VERB"


def _not_a_time(token: Any) -> bool:
    """A name NER took for a date or a time ("collecting Autumn from school") where no word before it makes it
    one ("this Autumn", "in Summer", "next June")."""
    before = token.doc[token.i - 1].lower_ if token.i > 0 else ""
    return before not in ("this", "last", "next", "in", "every", "the", "of", "during", "until", "since", "by",
                          "early", "late", "mid", "through", "all")


def _word_taken_for_a_name(text: str, span: Span) -> bool:
    """NER hits that are ordinary words: a lower-case word ("gran"), one dictionary word opening a sentence taken
    for an organisation ("Password reset link", "Driver's licence"), or a brand, an acronym or a word everyone
    writes ("Amazon", "NHS", "Indian") where nothing says it is the user's employer or school."""
    value = text[span.start:span.end]
    if value.islower() and value.title() in KINSHIP_WORDS:
        return True
    if value.islower() and all(is_dictionary_word(w) for w in value.split()):
        return True
    foreign = [is_foreign_word(w, text) for w in value.split()]
    if opens_sentence(text, span.start) and any(foreign) and all(
            f or (is_common_word(w) and w.lower() not in first_names())
            for w, f in zip(value.split(), foreign, strict=True)):
        return True  # "Der Nachbar ...", "Envíale el ...": the opening words of a sentence in another language
    if span.kind in ("ORGANIZATION", "LOCATION") and _a_public_place(text, span):
        return True
    if span.kind not in ("ORGANIZATION", "NAME") or " " in value or _employer_before(text, span):
        return False
    if span.kind == "ORGANIZATION" and is_dictionary_word(value) and not text[:span.start].strip(" \"'“"):
        return True
    if value.isupper() and 2 <= len(value) <= 5 and not _name_in_capitals(value):
        return True
    return span.kind == "ORGANIZATION" and is_common_word(value) and value.lower() not in first_names()


_FIRST_PERSON = re.compile(r"(?i:\b(?:i|i'm|im|i've|i'd|me|my|mine|we|we're|us|our|ours)\b)")
_ID_WORDS = frozenset("ID DNI NIE PAN SSN NHS NIN TIN VAT IBAN PIN".split())


def _a_public_place(text: str, span: Span) -> bool:
    """A landmark or a public body named in a sentence that says nothing of the user ("The Eiffel Tower is 330
    metres tall", "according to the Met Office"): several capitalised words after "the", and no "I", "my" or "we"
    in the text; or a name of an identity document taken for an organisation ("Omani ID")."""
    value = text[span.start:span.end]
    words = value.split()
    if span.kind == "ORGANIZATION" and words[-1] in _ID_WORDS:
        return True
    the = words[0] in ("The", "the") or text[:span.start].endswith(("the ", "The "))
    return (the and len([w for w in words if w[:1].isupper()]) >= 2 and not _FIRST_PERSON.search(text)
            and not _employer_before(text, span))


def _employer_before(text: str, span: Span) -> bool:
    return _EMPLOYER_BEFORE.search(text[max(0, span.start - 80):span.start]) is not None


# Words before an organisation that make it the user's own: where they work or study.
_EMPLOYER_BEFORE = re.compile(
    r"(?i:\b(?:(?:work(?:s|ed|ing)?|job|hired|join(?:s|ed|ing)?|intern(?:s|ed|ing)?|stud(?:y|ies|ied|ying|ent)|"
    r"enrol(?:l?ed)?|teach(?:es|ing)?|employed|placement|contract(?:ing)?) (?:\w+ )?(?:at|for|with|by|in)|"
    r"(?:employer|school|college|university|uni|company|firm) (?:is|was|:)|"
    r"(?:boss|manager|colleagues?|coworkers?|office) (?:at|from|in)) (?:the )?)$")


def _coordinated_names(tokens: Any, names: list[Span]) -> list[Span]:
    """A capitalised word joined by "and" or a comma to a name is one too: "taking Sky and River", "Sky, River and
    Hope" (words that no list knows as names)."""
    found = list(names)
    changed = True
    while changed:
        changed = False
        for t in tokens:
            if _opens_sentence(t) or not (t.text[:1].isupper() and t.text[1:].islower() and t.text.isalpha()):
                continue
            if any(s.start <= t.idx < s.end for s in found) or t.text.lower() in CALENDAR_WORDS:
                continue
            neighbours = [t.nbor(-2) if t.i >= 2 and t.nbor(-1).lower_ in ("and", ",", "&") else None,
                          t.nbor(2) if t.i + 2 < len(t.doc) and t.nbor(1).lower_ in ("and", ",", "&") else None]
            if any(n is not None and any(s.start == n.idx and s.kind in ("PERSON", "NAME") for s in found)
                   for n in neighbours):
                found.append(Span(t.idx, t.idx + len(t.text), "PERSON", "ner"))
                changed = True
    return sorted(found, key=lambda s: s.start)


def _untyped_name(token: Any, *, titled: bool) -> bool:
    """A name NER left untyped: a proper noun ("Call Priya on ..."), or a capitalised word inside a sentence that
    is no English word and no month ("climbing with Yusuf"). A dictionary word opening a sentence, or inside what
    NER took for a title, is the word."""
    text = token.text
    if not text[:1].isupper() or text.lower().removesuffix("s") in CALENDAR_WORDS or text in NOT_NAMES or len(text) < 2:
        return False
    if _opens_sentence(token) and is_foreign_word(text, token.doc.text):  # "Geboren am ...", "Envío a ..."
        return False  # (inside a sentence a capital is a name in most languages: "Matteo", "Madrid")
    if _opens_sentence(token) or titled:  # a word Webster's knows but nobody writes is a name: "Arjun starts"
        return token.pos_ == "PROPN" and (not is_dictionary_word(text) or word_zipf(text) < RARE_WORD_ZIPF)
    return token.pos_ == "PROPN" or (text[1:].islower() and not is_dictionary_word(text) and not is_common_word(text))


_SOFTWARE_VERBS = frozenset("install installed upgrade upgraded update updated restart restarted run ran deploy "
                            "deployed uninstall reinstall pip npm brew apt using use".split())


def _name_in_capitals(text: str) -> bool:
    """A name shouted or written on a card in capitals ("NAME ON CARD: AMARA NWOSU"): five letters or more that
    are no English word and rare, or a first name that is no word; shorter capitals are acronyms ("AWS", "NHS")."""
    if not (text.isupper() and text.isalpha()) or text in NOT_NAMES or is_dictionary_word(text):
        return False
    return (len(text) >= 5 and word_zipf(text) < RARE_WORD_ZIPF) or (len(text) >= 3 and text.lower() in first_names())


# Verbs whose object is a person when it has no article: "tell maria", "ring kwame", "cc Bill".
_CALL_VERBS = frozenset("tell told ask asked ring rang call called text texted txt message messaged msg email emailed "
                        "e-mail remind reminded thank thanked invite invited cc ping pinged dm phone phoned".split())


def _lower_case_name(token: Any) -> bool:
    """A name typed in lower case: one no list knows ("ask siobhan if kwame still has my charger"), a rare word
    that is no English word standing where a person stands (a proper noun, or the subject of a verb), and not a
    program being installed or run ("restart nginx"); or any first name or rare word right after a verb of
    calling or telling ("tell maria im late", "ring kwame on ...", "tell hope i found her keys")."""
    text = token.text
    if not (text.islower() and text.isalpha() and len(text) >= 3) or text in CALENDAR_WORDS:
        return False
    before = token.doc[token.i - 1].lower_ if token.i > 0 else ""
    determined = any(c.dep_ in ("det", "poss", "amod", "compound") for c in token.children)  # "the keypad"
    if determined or before in _SOFTWARE_VERBS:
        return False
    named = text in first_names()
    rare = word_zipf(text) < RARE_WORD_ZIPF and not any(is_dictionary_word(w) for w in (text, token.lemma_)) \
        and not is_foreign_word(text, token.doc.text)
    if before in _CALL_VERBS and (named or rare) and token.dep_ != "prt":
        return True
    return rare and (token.pos_ == "PROPN" or (token.pos_ == "NOUN" and token.dep_ in ("nsubj", "nsubjpass", "poss")))


_NAME_GAP = re.compile(rf" (?:{NAME_PARTICLES} )*")


def _joined_names(text: str, ner: list[Span]) -> list[Span]:
    """Names that touch become one: "Ingrid" (an untyped proper noun) then "Solberg" (PERSON) is one PERSON, and so
    is "Amara" then "Nwosu" (which the small model calls a place): a leading untyped name makes the whole a person."""
    out: list[Span] = []
    for span in sorted(ner, key=lambda s: (s.start, -s.end)):
        last = out[-1] if out else None
        if last and _NAME_GAP.fullmatch(text[last.end:span.start]) and (
                "NAME" in (last.kind, span.kind) or last.kind == span.kind == "PERSON"):
            kind = "PERSON" if last.kind == "NAME" or "PERSON" in (last.kind, span.kind) else last.kind
            out[-1] = Span(last.start, span.end, kind, "ner")
        else:
            out.append(span)
    return out
