"""What personal data looks like, for the privacy gate (`privacy.py`): patterns for values with a shape (dates of
birth, street addresses, secrets, e-mails spelled out), and the first-name list with the dictionary that says which
names are also words.

Patterns capture the value in a group named `value`; the words around it ("my password is") only find it.
Names: a word from the census's first-name list is a person where it is written as a name (capitalised inside a
sentence: "had lunch with Hope"), or written in lower case when it is no English word ("call ingrid back"). A name
that is also a word ("Rose", "Summer", "Mark") is left alone at the start of a sentence and in lower case, where it
is far more often the word ("Rose bushes need pruning", "I hope").
"""

from __future__ import annotations

import importlib.resources
import pickle
import re
from functools import cache

CALENDAR_WORDS = frozenset("""monday tuesday wednesday thursday friday saturday sunday january february march april
may june july august september october november december""".split())

_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
          r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_DATE = (rf"(?:\d{{1,2}}[/.-]\d{{1,2}}[/.-]\d{{2,4}}|\d{{4}}-\d{{2}}-\d{{2}}|{_MONTH}\.? \d{{1,2}}(?:st|nd|rd|th)?,? "
         rf"\d{{4}}|\d{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTH},? \d{{4}})")
# Street words, British ones included: an address "9 Elm Grove" has no "Street" in it.
_STREET_WORDS = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|"
                 r"Close|Square|Sq|Crescent|Parkway|Highway|Hwy|Gardens|Grove|Rise|Mews|Row|Walk|Green|Hill|View|"
                 r"Heights|Park|Vale|Parade|Wharf|Yard|Quay|Gate|Chase|Meadows?|Fields|Circle|Cir|Loop|Trail|Path)")
_US_STATES = ("AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|"
              "ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC")
_SEP = r"(?:\s*(?:\.|\(dot\)|\[dot\]|\bdot\b)\s*)"  # "." as people spell it out to dodge scrapers
_AT = r"(?:\s*(?:\(at\)|\[at\]|\bat\b)\s*)"
_LOCAL = r"[A-Za-z0-9_%+-]+"

# Our own patterns, for what Presidio has no recognizer for (or one too loose for us).
PATTERNS: dict[str, re.Pattern[str]] = {
    "DATE_OF_BIRTH": re.compile(
        rf"(?i:\b(?:born(?: on)?|birthday(?: is)?(?: on)?|d\.?o\.?b\.?:?|date of birth:?|birth date:?)"
        rf"(?:\s+(?:is|was))?(?:\s+the)?\s+)"
        rf"(?P<value>{_DATE})"),
    "STREET_ADDRESS": re.compile(
        rf"\b(?P<value>\d{{1,5}}[A-Za-z]?,? (?:[A-Z][a-z]+\.? ){{1,3}}{_STREET_WORDS}\b\.?"
        rf"(?:,? (?:Apt|Apartment|Suite|Unit|Flat)\.? ?#?\w+)?"
        rf"|[A-Z][a-zäöüß]+(?:straße|strasse|str\.|weg|gasse|platz|allee|gata|gatan|vej|laan|straat) \d{{1,4}}[a-z]?"
        rf"|(?i:flat|apt\.?|apartment|unit|suite) \w{{1,4}}, \d{{1,5}}[A-Za-z]? [A-Z][a-z]+(?: [A-Z][a-z]+){{0,2}})"),
    # A number and capitalised words where a home is named: "I live at 14 Marlowe", "moved to 3 Kestrel".
    "HOME_ADDRESS": re.compile(
        r"(?i:\b(?:live|living|lives|lived|moved|moving|stay|staying|address(?: is)?|send (?:it|them|the \w+) to|"
        r"deliver(?:ed)? to|into)\s+(?:at|to|in)?\s*)"
        r"(?P<value>(?:(?i:flat|apt\.?|apartment|unit|suite) \w+, )?\d{1,5}[A-Za-z]?,? (?:[A-Z][a-z]+ ?){1,3})(?<! )"
        # a number and a name in a list, before its town: "..., 19 Birchfield, Cork"
        r"|(?<=, )(?P<listed>\d{1,4}[A-Za-z]? [A-Z][a-z]+(?: [A-Z][a-z]+)?)(?=, [A-Z][a-z]+)"),
    # Postcodes by their shape: British (SW1A 1AA), Canadian (K1A 0B1), Dutch (1012 AB).
    "POSTCODE": re.compile(
        r"\b(?P<value>[A-Z]{1,2}\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2}|[ABCEGHJ-NPRSTVXY]\d[A-Z] ?\d[A-Z]\d|"
        r"[1-9]\d{3} ?(?!SA|SD|SS)[A-Z]{2}|(?:[AC-FHKNPRTV-Y]\d{2}|D6W) [0-9AC-FHKNPRTV-Y]{4})\b"
        rf"|\b(?:{_US_STATES}) (?P<zip>\d{{5}}(?:-\d{{4}})?)\b"),
    # A capitalised name after a title or a relation ("my sister Lena", "Dr. Okafor"): NER misses many of these.
    "PERSON": re.compile(
        r"(?:\b(?:Dr|Mr|Mrs|Ms|Mx|Prof|Sir|Dame|Aunt|Auntie|Uncle|Nana|Granny|Grandma|Grandpa|Cousin)\.? |"
        r"\b(?i:my|our|his|her|their) (?i:friend|best friend|sister|brother|"
        r"wife|husband|partner|boyfriend|girlfriend|fianc[ée]e?|boss|manager|colleague|coworker|co-worker|neighbou?r|"
        r"son|daughter|mother|father|mum|mom|dad|cousin|aunt|uncle|niece|nephew|grandma|grandpa|grandmother|"
        r"grandfather|doctor|dentist|therapist|teacher|landlord|roommate|flatmate),? )"
        r"(?!(?:Dr|Mr|Mrs|Ms|Mx|Prof)\b)(?P<value>[A-Z][a-z'-]+(?: [A-Z][a-z'-]+)?)"),
    "URL_SECRET": re.compile(
        r"(?P<value>\bhttps?://(?:[^\s/@]+:[^\s/@]+@\S+|\S*[?&#](?:[\w-]*(?:token|key|secret|password|passwd|pwd|"
        r"sig|signature|auth|session|sid|code|otp)[\w-]*)=[^\s&#]+\S*|"
        r"\S*[?&#][\w-]{1,20}=(?=[^\s&#]*\d)(?=[^\s&#]*[A-Za-z])[^\s&#]{8,}\S*))", re.I),
    # An e-mail address spelled out: "lena dot moss at fastmail dot com", "t.okafor (at) outlook (dot) com".
    "EMAIL_ADDRESS": re.compile(
        rf"(?P<value>\b{_LOCAL}(?:{_SEP}{_LOCAL})*{_AT}[A-Za-z0-9-]+(?:{_SEP}[A-Za-z0-9-]+)*{_SEP}"
        rf"(?:com|org|net|edu|gov|io|me|co|uk|de|fr|nl|se|no|dk|fi|es|it|pl|ca|au|info|dev|app)\b)"),
    # What follows a word that names a secret: "password is X", "PIN: 4471", "the door code is 4471".
    "PASSWORD": re.compile(
        r"(?i:\b(?:password|passwd|pwd|passphrase|passcode|pass code|pin(?: code| number)?|"
        r"(?:keypad|garage|lock|locker|safe|padlock|door|gate|alarm|entry|access|security|recovery|backup|"
        r"verification|2fa|otp) codes?|wi-?fi (?:key|code))\b(?: for [\w' -]{1,30}?)?"
        r"(?:\s+(?:is|was|=|:|are)|:|=)\s*[\"'“]?)(?P<value>(?:\S+ ){0,3}?\S*\d\S*?|(?:[a-z]+ ){2,5}[a-z]+|\S{4,}?)"
        r"(?=[\"'”]?(?:[.,;!?)]?(?:\s|$)))"),
    # Keys and tokens by their shape: vendors' prefixes, then any long run of letters and digits mixed.
    "API_KEY": re.compile(
        r"(?P<value>\b(?:sk|pk|rk)-(?:[A-Za-z0-9]+-){0,2}[A-Za-z0-9]{16,}|\bgh[pousr]_[A-Za-z0-9]{20,}|"
        r"\bgithub_pat_\w{20,}|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b|\bxox[abposr]-[A-Za-z0-9-]{10,}|\bAIza[\w-]{30,}|"
        r"\bglpat-[\w-]{20,}|\beyJ[\w-]{10,}\.[\w-]{10,}\.[\w-]{10,}|"
        r"\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[a-z])(?=[A-Za-z0-9_-]*[A-Z])[A-Za-z0-9_-]{24,}\b)"),
    # A plate after the word for it, or in the British (AB12 CDE) and German (B-MW 4521) shapes.
    "LICENSE_PLATE": re.compile(
        r"(?i:\b(?:licen[cs]e plate|number plate|plate(?: number)?|reg(?:istration)?(?: number)?|tag)"
        r"(?:\s+(?:is|was|:|reads|for|of))?\s*)(?P<value>[A-Z0-9]{1,4}[- ]?[A-Z0-9]{1,4}(?:[- ]?[A-Z0-9]{1,4})?)\b"
        r"|\b(?P<uk>[A-Z]{2}\d{2} ?[A-Z]{3})\b|\b(?P<de>[A-ZÄÖÜ]{1,3}-[A-Z]{1,2} ?\d{1,4}[EH]?)\b"),
    # Passport, ID and licence numbers after the words that name them.
    "ID_NUMBER": re.compile(
        r"(?i:\b(?:passport|national id|id card|identity card|id|driver'?s licen[cs]e|driving licen[cs]e|licen[cs]e|"
        r"social insurance|insurance|nhs|tax|personnel|employee|member(?:ship)?|student|patient|dni|nie|nif|bsn|"
        r"pesel|codice fiscale|aadhaar|national insurance|personalausweis)"
        r"(?:,? (?:number|no\.?|num|#))?(?:\s+(?:is|was|:)|:|#|,)?\s*)"
        r"(?P<value>(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{4,}[A-Z0-9])\b"),
}

# Card numbers by their digits (Luhn-checked in pattern_spans): Presidio's pattern misses newer ranges.
_CARD = re.compile(r"\b(?P<value>\d{4}(?:[ -]?\d{4}){2}[ -]?\d{1,7})\b")


def pattern_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, type) of every pattern's values in `text` (each pattern's other named groups are values too:
    a plate's bare shapes, a listed address, a ZIP code), and Luhn-valid card numbers."""
    out = []
    for kind, pattern in PATTERNS.items():
        kind = {"HOME_ADDRESS": "STREET_ADDRESS", "POSTCODE": "STREET_ADDRESS"}.get(kind, kind)
        for m in pattern.finditer(text):
            group = next(g for g in pattern.groupindex if m.group(g))
            out.append((m.start(group), m.end(group), kind))
    out += [(m.start("value"), m.end("value"), "CREDIT_CARD") for m in _CARD.finditer(text)
            if _luhn(re.sub(r"\D", "", m.group("value")))]
    return out


def _luhn(digits: str) -> bool:
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(int(c) for c in reversed(digits)):
        total += d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2)
    return total % 10 == 0


@cache
def first_names() -> frozenset[str]:
    """The 1990 US census's first names (PyPI `names`, MIT), lower case."""
    folder = importlib.resources.files("names")
    return frozenset(line.split()[0].lower() for part in ("dist.female.first", "dist.male.first")
                     for line in (folder / part).read_text().splitlines() if line.strip())


@cache
def dictionary_words() -> frozenset[str]:
    """English words written in lower case in Webster's 2nd (PyPI `english-words`): "rose" is one, "ingrid" not."""
    with (importlib.resources.files("english_words") / "data" / "web2.pickle").open("rb") as f:
        words = pickle.load(f)  # the package's own data file, installed with it
    return frozenset(w for w in words if w.islower())


def is_listed_name(word: str, *, sentence_start: bool) -> bool:
    """Whether `word`, as written, is a first name from the list used as a name (see the module docstring)."""
    lower = word.lower()
    if len(word) < 3 or not word.isalpha() or lower not in first_names() or lower in CALENDAR_WORDS:
        return False
    is_word = lower in dictionary_words()
    if word.islower():
        return not is_word
    if word[0].isupper() and word[1:].islower():
        return not (sentence_start and is_word)
    return False  # ALL CAPS: a heading or an acronym, not how a name is written


def is_dictionary_word(word: str) -> bool:
    """Whether `word` in lower case is an English word (then a name that is one is matched only as written)."""
    return word.lower() in dictionary_words()
