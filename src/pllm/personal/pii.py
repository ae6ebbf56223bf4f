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
from dataclasses import dataclass
from functools import cache, lru_cache

CALENDAR_WORDS = frozenset("""monday tuesday wednesday thursday friday saturday sunday january february march april
may june july august september october november december""".split())

# How people name a relative in place of a name ("Text from Mum", "gran's flat"): the words, not personal data.
KINSHIP_WORDS = frozenset("""Mum Mom Mam Mummy Mommy Mama Ma Dad Daddy Papa Pa Gran Nan Nanna Nanny Grandad Granddad
Grandmother Grandfather Sis Bro Honey Babe Darling Hubby Wifey""".split())

# Labels for personal data (and titles and kinship words) that the small NER model mistakes for organisations.
NOT_NAMES = frozenset("""IBAN SSN DOB PIN ID URL Email E-mail Phone Tel Mobile IBAN: SWIFT BIC Mr Mrs Ms Mx Dr Prof
Aunt Auntie Uncle Nana Granny Grandma Grandpa Cousin""".split()) | KINSHIP_WORDS


@dataclass(frozen=True)
class Span:
    """A stretch of text the gate replaces: where, what kind of value, and which pass found it."""

    start: int
    end: int
    kind: str
    source: str  # vault, pattern, number, ner, model (the order in which they win an overlap)


_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
          r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_ORDINAL_WORD = (r"(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth|"
                 r"fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|thirtieth|"
                 r"twenty-(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth)|thirty-first)")
_FOREIGN_MONTH = (r"(?:enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|"
                  r"diciembre|janvier|février|mars|avril|mai|juin|juillet|août|septembre|octobre|novembre|décembre|"
                  r"januar|jänner|februar|märz|april|juni|juli|oktober|dezember|gennaio|febbraio|aprile|maggio|"
                  r"giugno|luglio|settembre|ottobre|dicembre|janeiro|fevereiro|março|maio|junho|julho|"
                  r"setembro|outubro|novembro|dezembro)")
_DATE = (rf"(?:(?i:{_ORDINAL_WORD}) (?:of )?{_MONTH},? \d{{4}}|"
         rf"\d{{1,2}}\.? (?:de )?(?i:{_FOREIGN_MONTH})(?: de)? \d{{4}}|"
         rf"\d{{1,2}}[/.-]\d{{1,2}}[/.-]\d{{2,4}}|\d{{4}}-\d{{2}}-\d{{2}}|(?i:{_MONTH})\.? \d{{1,2}}(?:st|nd|rd|th)?,? "
         rf"\d{{4}}|\d{{1,2}}(?:st|nd|rd|th)? (?:of )?(?i:{_MONTH})\.?,? \d{{4}}|"
         rf"(?i:{_MONTH})\.? \d{{1,2}}(?:st|nd|rd|th)?\b|"
         rf"\d{{1,2}}(?:st|nd|rd|th)? (?:of )?(?i:{_MONTH})\b)")
# Street words, British ones included: an address "9 Elm Grove" has no "Street" in it.
_STREET_WORDS = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|"
                 r"Close|Square|Sq|Crescent|Parkway|Highway|Hwy|Gardens|Grove|Rise|Mews|Row|Walk|Green|Hill|View|"
                 r"Heights|Park|Vale|Parade|Wharf|Yard|Quay|Gate|Chase|Meadows?|Fields|Circle|Cir|Loop|Trail|Path)")
_ROMANCE_STREET = (r"(?:Rue|Avenue|Boulevard|Bd|Chemin|Allée|Impasse|Quai|Cours|Calle|Carrer|Avenida|Paseo|Via|Viale|"
                   r"Piazza|Corso|Largo|Rua|Praça|Travessa)")
# A flat or a floor after a street's number: ", 3º B", " apto 81", ", kv. 41", ", Apt 5C".
_FLAT = r"(?:,? (?:(?i:apartment|apto|apt|app|suite|unit|flat|piso|dpto|kv|esc|bus)\.? ?\w{1,4}|\d{1,2}[º°ª] ?[A-Z]?))?"
_PARTICLE = r"(?:de|des|du|de la|la|le|les|del|della|di|da|do|dos|das|d'|l')"
# The particles between a person's names ("Sanne de Vries", "Paddy Ó Briain", "Aisha bint Salem"), any case.
NAME_PARTICLES = (r"(?i:de|da|das|do|dos|di|del|della|van|von|der|den|ter|ten|le|la|du|bin|binti|bint|ibn|al|el|ó|ní|"
                  r"nic|mac|mc|ua)")
_US_STATES = ("AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|"
              "ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC")
_SEP = r"(?:\s*(?:\.|\(dot\)|\[dot\]|\bdot\b)\s*)"  # "." as people spell it out to dodge scrapers
_AT = r"(?:\s*(?:\(at\)|\[at\]|\bat\b)\s*)"
_LOCAL = r"[A-Za-z0-9_%+-]+"

# Our own patterns, for what Presidio has no recognizer for (or one too loose for us).
PATTERNS: dict[str, re.Pattern[str]] = {
    "DATE_OF_BIRTH": re.compile(
        rf"(?i:\b(?:born(?: on)?|b-?day|birthday(?: is)?(?: on)?|d\.?o\.?b\.?:?|date of birth:?|birth date:?|"
        rf"né(?:e)? le|geboren am|nacid[oa] el|nat[oa] il|nascid[oa] em|cumpleaños(?: es)?(?: el)?|urodzon[ay]|"
        rf"(?:ka |ki |ke )?janam ?din|doğum tarihi:?|sinh ngày|ngày sinh:?)"
        rf"(?:\s+(?:is|was))?(?:\s+the)?\s+)"
        rf"(?P<value>{_DATE})"),
    "STREET_ADDRESS": re.compile(
        rf"\b(?P<value>\d{{1,5}}[A-Za-z]?,? (?:[A-Z][a-z]+\.? ){{1,3}}{_STREET_WORDS}\b\.?"
        rf"(?:,? (?:Apt|Apartment|Suite|Unit|Flat)\.? ?#?\w+)?"
        rf"|[A-Z][a-zäöüß]+(?:straße|strasse|str\.|weg|gasse|platz|allee|gata|gatan|vej|laan|straat|gracht|kade|"
        rf"plein|steeg) \d{{1,4}}(?:[a-z]|-[A-Z]{{1,3}}|-\d{{1,3}})?{_FLAT}"
        rf"|\d{{1,4}}[a-z]?,? {_ROMANCE_STREET}(?: (?:{_PARTICLE} )*[A-ZÀ-Ý][\w'-]+){{1,3}}"
        rf"|{_ROMANCE_STREET}(?: (?:{_PARTICLE} )*[A-ZÀ-Ý][\w'-]+){{1,3}},? \d{{1,4}}[a-z]?{_FLAT}"
        rf"|[A-ZÆØÅ][\wæøå]*s (?:gate|gata|gatan|vei|veien|vej|väg|vägen|allé|plass|torg) \d{{1,4}}[A-Z]?\b"
        rf"|(?i:ul|ulitsa|pr|prospekt|al|aleja|os)\.? [A-ZÀ-ÝА-Я][\w'-]+(?: [A-Z][\w'-]+)?,? \d{{1,4}}[a-z]?{_FLAT}"
        rf"|(?i:plot|stand|house|block) \d{{1,5}}[A-Z]?, (?:[A-Z][a-z]+ ){{1,3}}{_STREET_WORDS}\b"
        rf"|(?i:flat|apt\.?|apartment|unit|suite) \w{{1,4}}, \d{{1,5}}[A-Za-z]? [A-Z][a-z]+(?: [A-Z][a-z]+){{0,2}})"),
    # A number and capitalised words where a home is named: "I live at 14 Marlowe", "moved to 3 Kestrel".
    "HOME_ADDRESS": re.compile(
        r"(?i:\b(?:live|living|lives|lived|moved|moving|stay|staying|address(?: is)?|send (?:it|them|the \w+) to|"
        r"deliver(?:ed)? to|into)\s+(?:at|to|in)?\s*)"
        r"(?P<value>(?:(?i:flat|apt\.?|apartment|unit|suite) \w+, )?\d{1,5}[A-Za-z]?,? "
        r"(?:(?!(?i:and|but|so|or|with|for|in|on|at|the|a|an|to|from|since|until|now|today|tonight|tomorrow|next|"
        r"last|this|if|when|because|pm|am)\b)[A-Za-z][a-z]+ ?){1,3})(?<! )"
        # a number and a name in a list, before its town: "..., 19 Birchfield, Cork"
        r"|(?<=, )(?P<listed>\d{1,4}[A-Za-z]? [A-Z][a-z]+(?: [A-Z][a-z]+)?)(?=, [A-Z][a-z]+)"
        r"|(?i:\b(?:to|at|from|near)\s+)(?P<numbered>\d{1,4}[A-Za-z]? [A-Z][a-z]+(?: [A-Z][a-z]+)?)"
        r"(?=,? (?:[A-Z][a-z]+|[A-Z0-9]{2,4}\b))"),
    # Postcodes by their shape: British (SW1A 1AA), Canadian (K1A 0B1), Dutch (1012 AB).
    "POSTCODE": re.compile(
        r"\b(?P<value>[A-Z]{1,2}\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2}|[ABCEGHJ-NPRSTVXY]\d[A-Z] ?\d[A-Z]\d|"
        r"[1-9]\d{3} ?(?!SA|SD|SS)[A-Z]{2}|(?:[AC-FHKNPRTV-Y]\d{2}|D6W) [0-9AC-FHKNPRTV-Y]{4})\b"
        rf"|\b(?:{_US_STATES}) (?P<zip>\d{{5}}(?:-\d{{4}})?)\b|(?<=, )(?P<four>\d{{4}})(?= [A-ZÀ-Ý][\w-]+)"),
    # A US town and its state: "Brooklyn, NY".
    "CITY_STATE": re.compile(rf"\b(?P<value>[A-Z][a-z]+(?: [A-Z][a-z]+)?, (?:{_US_STATES}))\b"),
    # A capitalised name after a title or a relation ("my sister Lena", "Dr. Okafor"): NER misses many of these.
    "PERSON": re.compile(
        r"(?:\b(?:Dr|Mr|Mrs|Ms|Mx|Prof|Sir|Dame|Aunt|Auntie|Uncle|Nana|Granny|Grandma|Grandpa|Cousin)\.? |"
        r"\b(?i:my|our|his|her|their) (?i:friend|best friend|sister|brother|"
        r"wife|husband|partner|boyfriend|girlfriend|fianc[ée]e?|boss|manager|colleague|coworker|co-worker|neighbou?r|"
        r"son|daughter|mother|father|mum|mom|dad|cousin|aunt|uncle|niece|nephew|grandma|grandpa|grandmother|"
        r"grandfather|doctor|dentist|therapist|teacher|landlord|roommate|flatmate),? )"
        r"(?!(?:Dr|Mr|Mrs|Ms|Mx|Prof)\b)(?P<value>[A-Z][a-z'-]+(?: [A-Z][a-z'-]+)?)"),
    "URL_SECRET": re.compile(
        r"(?P<value>\b[a-z][a-z0-9+.-]{1,15}://[^\s/@:]+:[^\s/@]+@\S*[\w/]|\bhttps?://(?:\S*[?&#](?:[\w-]*(?:token|key|secret|password|passwd|pwd|"
        r"sig|signature|auth|session|sid|code|otp)[\w-]*)=[^\s&#]+\S*|"
        r"\S*[?&#][\w-]{1,20}=(?=[^\s&#]*\d)(?=[^\s&#]*[A-Za-z])[^\s&#]{8,}\S*))", re.I),
    # An e-mail address spelled out: "lena dot moss at fastmail dot com", "t.okafor (at) outlook (dot) com".
    "EMAIL_ADDRESS": re.compile(
        rf"(?P<value>\b{_LOCAL}(?:{_SEP}{_LOCAL})*{_AT}[A-Za-z0-9-]+(?:{_SEP}[A-Za-z0-9-]+)*{_SEP}"
        rf"(?:com|org|net|edu|gov|io|me|co|uk|de|fr|nl|se|no|dk|fi|es|it|pl|ca|au|info|dev|app)\b)"),
    # What follows a word that names a secret: "password is X", "PIN: 4471", "the door code is 4471".
    "PASSWORD": re.compile(
        r"(?i:\b(?:pas{1,2}w[o0]?r?d|pwd|pw|pword|passphrase|passcode|pass code|pin(?: code| number)?|"
        r"security answer|secret answer|(?:mother's )?maiden name|"
        r"(?:keypad|garage|lock|locker|lockbox|key ?box|key ?safe|safe|padlock|door|gate|alarm|entry|access|"
        r"security|recovery|backup|verification|2fa|otp|login|sign-?in|unlock|bike lock|combination|voicemail|"
        r"sim|puk|phone|card) codes?|combination|lockbox|key ?safe|key ?box|wi-?fi (?:key|code)|"
        r"kod(?: do \w+)?|codice(?: del \w+)?|c[oó]digo(?: d[eao] \w+)?|"
        r"code (?:de la |du |d')?(?:porte|portail|entrée|immeuble)|digicode|t[üu]rcode|torcode|pincode|"
        r"haslo|hasło|contraseña|senha|mot de passe|passwort|wachtwoord|şifre|sifre|mat khau|mật khẩu)\b"
        # "is" or ":" (after "for the family netflix"), "changed the PIN to 7305", or straight before a value with
        # a digit ("password hunter2")
        r"(?: (?:for|at|to|on|of|in) [^.!?\n]{1,60}?(?:\s+(?:is|was|=|:|are|now)|:|=)|"
        r"\s+(?:is|was|=|:|are|now|è|é|es|est|ist|is het|jest|la|là|olan|dır|dir)(?:\s*[:=])?(?=\s)|:|=|"
        r"\s+to(?=\s+\S*\d)|(?=\s+\S*\d))\s*[\"'“]?)"
        r"(?P<value>(?:\S+ ){0,3}?\S*\d\S*?[!#$%&*]*|(?:[a-z]+ ){2,5}[a-z]+|\S{4,}?[!#$%&*]*)"
        r"(?=[\"'”]?(?:[.,;!?)]?(?:\s|$)))"
        r"|(?i:\b(?:memorable|secret|magic) word(?:\s+(?:is|was))?:?\s+)(?P<word>[\w!#$%&*-]{3,})"
        # a lock, an alarm or a gate named without the word "code": only a number of four digits or more
        r"|(?i:\b(?:(?:bike |door |gate )?lock|alarm|gate)(?:\s+(?:is|was))?:?\s+)"
        r"(?P<digits>\d[\d-]{2,9}\d)(?![\w:.])"),
    # Keys and tokens by their shape: vendors' prefixes, then any long run of letters and digits mixed.
    "API_KEY": re.compile(
        r"(?P<value>\b(?:sk|pk|rk)-(?:[A-Za-z0-9]+-){0,2}[A-Za-z0-9]{16,}|\bgh[pousr]_[A-Za-z0-9]{20,}|"
        r"\bgithub_pat_\w{20,}|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b|\bxox[abposr]-[A-Za-z0-9-]{10,}|\bAIza[\w-]{30,}|"
        r"\bglpat-[\w-]{20,}|\beyJ[\w-]{10,}\.[\w-]{10,}\.[\w-]{10,}|"
        r"(?<![\w+/=-])(?=[A-Za-z0-9_+=-]*\d)(?=[A-Za-z0-9_+=-]*[a-z])(?=[A-Za-z0-9_+=-]*[A-Z])"
        r"[A-Za-z0-9_+=-]{24,}(?![\w+/=-]))"),
    # A plate after the word for it, or in the British (AB12 CDE) and German (B-MW 4521) shapes.
    "LICENSE_PLATE": re.compile(
        r"(?i:\b(?:licen[cs]e plate|number plate|plate(?: number)?|reg(?:istration)?(?: number)?|tag)"
        r"(?:\s+(?:is|was|:|reads|for|of))?\s*)(?P<value>[A-Z0-9]{1,4}[- ]?[A-Z0-9]{1,4}(?:[- ]?[A-Z0-9]{1,4}){0,2})\b"
        r"|\b(?P<uk>[A-Z]{2}\d{2} ?[A-Z]{3})\b|\b(?P<de>[A-ZÄÖÜ]{1,3}-[A-Z]{1,2} ?\d{1,4}[EH]?)\b"
        r"|\b(?P<india>[A-Z]{2} ?\d{1,2} ?[A-Z]{1,3} ?\d{4})\b"),
    "ORGANIZATION": re.compile(
        r"(?P<value>\b(?:[A-Z][\w'-]*(?: &)? ){1,4}(?:LLP|LLC|Ltd|Limited|Inc|GmbH|AG|S\.?A\.?|B\.?V\.?|N\.?V\.?|"
        r"PLC|plc|Pty|S\.?L\.?|S\.?r\.?l\.?|Oy|AB|ApS|KG)\b\.?)"),
    # Passport, ID and licence numbers after the words that name them.
    "ID_NUMBER": re.compile(
        r"(?i:\b(?:passport|national id|id card|identity card|id|driver'?s licen[cs]e|driving licen[cs]e|licen[cs]e|dl|"
        r"social insurance|insurance|nhs|tax|personnel|employee|member(?:ship)?|student|patient|dni|nie|nif|bsn|"
        r"pesel|codice fiscale|aadhaar|pan|ppsn?|ssn|sin|tfn|national insurance|personalausweis|voter id|"
        r"residence permit|visa|account|customer|policy|reference|case|claim|medicare|medicaid|health card)"
        r"(?:,? (?:number|no\.?|num|#))?(?:\s+(?:is|was|:)|:|#|,)?\s*)"
        r"(?P<value>[A-Z]{1,3}\d{1,3} \d{5,}|(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{4,}[A-Z0-9]|"
        r"\d{2,4}(?: \d{2,4}){1,4})\b"),
}

# Numbers by a shape no amount has: a Brazilian CPF (318.604.729-31); a hex secret of 24+ digits and letters.
_SHAPED = re.compile(r"(?<![\w.])(?P<cpf>\d{3}\.\d{3}\.\d{3}-\d{2})(?![\w.])"
                     r"|(?<![\w-])(?P<hex>(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{24,}|"
                     r"(?=[0-9A-F]*\d)(?=[0-9A-F]*[A-F])[0-9A-F]{24,})(?![\w-])")
# A number read aloud, seven digits or more: "oh seven nine one one four nine six two three eight".
_DIGIT_WORD = r"(?:zero|oh|o|one|two|three|four|five|six|seven|eight|nine|double \w+|triple \w+)"
_SPOKEN_NUMBER = re.compile(rf"(?i:(?<![\w-])(?P<value>(?:plus )?{_DIGIT_WORD}(?:[ ,-]+{_DIGIT_WORD}){{6,}})\b)")

# Card numbers by their digits (Luhn-checked in pattern_spans): Presidio's pattern misses newer ranges.
_CARD = re.compile(r"\b(?P<value>\d{4}(?:[ -]?\d{4}){2}[ -]?\d{1,7})\b")


# A run of digits, in groups: "486 213 9078", "9153-2286", "10435". Five digits or more is an identifier, a code or a
# postcode unless what is around it says it is an amount, a product or a version ("item 40-2291", "10,000 steps").
_NUMBER_RUN = re.compile(r"(?<![\w$£€¥₹.,/:+#-])(?P<value>\d+(?:[ -]\d+)*#?)(?![\w/:@%]|[.,]\d)")
_NOT_AN_IDENTIFIER_BEFORE = frozenset("""item items model part sku order product article flight bus train route
room page pages chapter version v step exit platform seat row line size no edition issue volume vol episode
season level score rank year years top ref build release tracking parcel shipment promo discount
voucher coupon invoice receipt ticket booking""".split())
_UNIT_AFTER = re.compile(r"\s*(?:%|(?i:k?m|km|kms|miles?|mi|kg|g|grams?|lbs?|pounds?|ml|l|litres?|liters?|oz|"
                         r"steps?|calories|kcal|cal|words?|pages?|people|persons?|users?|views?|followers?|likes?|"
                         r"times|mph|kph|rpm|mah|gb|mb|tb|kb|px|dpi|hz|mhz|ghz|w|kw|kwh|v|feet|ft|inches|in|cm|mm|"
                         r"dollars?|euros?|pounds?|quid|bucks|rupees?|yen|usd|eur|gbp|inr|aud|cad|sek|nok|dkk|chf|"
                         r"points?|pts|votes?|copies|units?|pieces?|pcs|items?|boxes|years?|days?|hours?|hrs|"
                         r"minutes?|mins?|seconds?|secs?)\b)")
_CURRENCY_BEFORE = re.compile(r"(?i:(?:usd|eur|gbp|inr|rs\.?|sek|nok|dkk|chf|aud|cad|kr\.?)\s*)$")
# "my Aadhaar is 4829 1736 5502", "my PAN: BQZPK4417M": a value with a digit that the user calls theirs.
_MY_VALUE = re.compile(r"(?i:\bmy\s+(?:[\w'-]+\s+){0,3}?(?:number\s+|no\.?\s+|#\s*)?(?:is|:|=)\s+)"
                       r"(?P<value>(?=[\w-]*\d)[A-Za-z0-9][\w-]{3,}(?:[ -]\d+)*)\b")


_ALNUM_ID = re.compile(r"(?<![\w-])(?P<value>(?=[A-Z0-9]*\d{5})(?=[A-Z0-9]*[A-Z])[A-Z0-9]{6,14}|"
                       r"(?=[A-Z0-9-]*[A-Z])(?=(?:[A-Z-]*\d){6})[A-Z0-9]+(?:-[A-Z0-9]+)+)(?![\w-])")


def opens_sentence(text: str, start: int) -> bool:
    """Whether the word at `start` opens a sentence: the text's first, or after a full stop, a question or
    exclamation mark, an ellipsis, a colon, a dash or a line break, with any opening quote or bracket between."""
    before = text[:start].rstrip(" \t\"“'‘(")
    return not before.strip() or before[-1] in ".!?…:-–—\n"


def is_an_amount(text: str, start: int, end: int) -> bool:
    """Whether the number at text[start:end] is an amount, a count, a product or a version by the words around."""
    before = text[:start].rstrip(" :#")
    words = re.findall(r"[A-Za-z]+", before[-30:])[-2:]  # "item 40-2291", "Order number 4417-2290"
    return bool(_UNIT_AFTER.match(text, end) or _CURRENCY_BEFORE.search(before)
                or any(w.lower() in _NOT_AN_IDENTIFIER_BEFORE for w in words))


def number_spans(text: str) -> list[tuple[int, int, str]]:
    """Identifiers by their digits (see `_NUMBER_RUN`) and values the user calls theirs (`_MY_VALUE`)."""
    out = [(m.start("value"), m.end("value"), "ID_NUMBER") for m in _NUMBER_RUN.finditer(text)
           if sum(c.isdigit() for c in m.group("value")) >= 5 and not is_an_amount(text, *m.span("value"))]
    out += [(m.start("value"), m.end("value"), "ID_NUMBER") for m in _ALNUM_ID.finditer(text)]
    out += [(m.start("value"), m.end("value"), "ID_NUMBER") for m in _MY_VALUE.finditer(text)
            if not (m.group("value").isdigit() and is_an_amount(text, *m.span("value")))]
    return out


def pattern_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, type) of every pattern's values in `text` (each pattern's other named groups are values too:
    a plate's bare shapes, a listed address, a ZIP code), Luhn-valid card numbers, numbers by their shape and
    numbers read aloud."""
    out = []
    for kind, pattern in PATTERNS.items():
        kind = {"HOME_ADDRESS": "STREET_ADDRESS", "POSTCODE": "STREET_ADDRESS"}.get(kind, kind)
        for m in pattern.finditer(text):
            group = next(g for g in pattern.groupindex if m.group(g))
            if group == "numbered" and all(is_dictionary_word(w) for w in m.group(group).split()[1:]):
                continue  # "meet at 7 Eleven, then": words, not a place's name
            out.append((m.start(group), m.end(group), "LOCATION" if kind == "CITY_STATE" else kind))
    out += [(m.start("value"), m.end("value"), "CREDIT_CARD") for m in _CARD.finditer(text)
            if _luhn(re.sub(r"\D", "", m.group("value")))]
    out += [(m.start(), m.end(), "ID_NUMBER" if m.group("cpf") else "API_KEY") for m in _SHAPED.finditer(text)]
    out += [(m.start("value"), m.end("value"), "PHONE_NUMBER") for m in _SPOKEN_NUMBER.finditer(text)]
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


def value_pattern(value: str) -> re.Pattern[str]:
    """Where a known value recurs: in any case ("mara", "MARA"), possessives included (the match stops at the
    apostrophe), any run of spaces for a space; a one-word name that is also an English word ("Rose", "Hope",
    "Will") only as written, so the flower, "I hope" and "I will" stay."""
    one_word_word = " " not in value and is_dictionary_word(value)
    body = r"\s+".join(re.escape(part) for part in value.split())
    return re.compile(rf"(?<!\w){body}(?!\w)", 0 if one_word_word else re.I)


def is_dictionary_word(word: str) -> bool:
    """Whether `word` in lower case is an English word (then a name that is one is matched only as written)."""
    return word.lower() in dictionary_words()


# Word frequencies (wordfreq's Zipf scale) the gate's rules judge words by, in one place:
COMMON_WORD_ZIPF = 3.9  # about once in 8,000 words of general English: "Amazon", "NHS", "Indian"; "Leith" is 3.0
RARE_WORD_ZIPF = 3.3  # below it a proper noun or a lower-case word is rare enough for a name: "kwame" 2.7, "siobhan"
# 2.8; "wifi" 3.9, "repo" 3.4
MODEL_WORD_ZIPF = 3.5  # what the model names is a word above this, unless it is a first name (pii_model.plausible)


def word_zipf(word: str) -> float:
    """How often `word` is written in general English, on wordfreq's Zipf scale (log10 of uses per billion words;
    PyPI `wordfreq`, its data CC-BY-SA 4.0): "the" 7.7, "Amazon" 4.6, "Leith" 3.0, "kwame" 2.7, unseen 0."""
    from wordfreq import zipf_frequency

    return float(zipf_frequency(word, "en"))


def is_common_word(word: str) -> bool:
    """Whether `word` is written often in general English: brands, public bodies and nationalities are; most
    people's and places' names are not."""
    return word_zipf(word) >= COMMON_WORD_ZIPF


FOREIGN_LANGUAGES = ("es", "de", "fr", "it", "pt", "nl", "pl", "sv")  # what bilingual users here write besides English
FOREIGN_WORD_ZIPF = 4.0  # "geboren" 5.1, "pasaporte" 4.2; "tomek" 3.8, "njeri" 0


def is_foreign_word(word: str, text: str) -> bool:
    """Whether `word` is a common word of another language ("Geboren", "pasaporte", "del") in a `text` written
    mostly in that language, and no first name from the list: the English NER and the name rules otherwise take
    such words for names. In English text every word is left to the English rules ("de Vries", "Oslo")."""
    lower = word.lower()
    return in_another_language(text) and lower not in first_names() and foreign_zipf(lower) >= FOREIGN_WORD_ZIPF


def foreign_zipf(word: str) -> float:
    """How often `word` is written in the most common of the other languages (wordfreq's Zipf scale)."""
    from wordfreq import zipf_frequency

    return max(float(zipf_frequency(word, lang)) for lang in FOREIGN_LANGUAGES)


@lru_cache(maxsize=8)  # the few texts one request looks at, token by token; not every text the process saw
def in_another_language(text: str) -> bool:
    """Whether fewer than half of the lower-case words of `text` are written more in English than in any of the
    other languages (a sentence in Spanish, German, Polish ...). Names are mostly capitalised: they do not decide."""
    words = [w for w in re.findall(r"[^\W\d_]{2,}", text) if w.islower()]
    english = sum(word_zipf(w) >= foreign_zipf(w) - 1.0 for w in words)
    return len(words) >= 3 and english < 0.5 * len(words)
