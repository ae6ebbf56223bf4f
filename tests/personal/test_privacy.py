"""The privacy gate on real Presidio and the packaged spaCy model: what it replaces, what it keeps, consent, the log."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pllm.bench.privacy import DEFAULT_DATA, load_sentences, redaction_with_vault, score_redaction
from pllm.config import Settings
from pllm.errors import ConsentError
from pllm.personal.privacy import PrivacyGate, Redaction, Redactor, known_entities
from pllm.personal.vault import create_vault


def redact(text: str, redactor: Redactor | None = None) -> tuple[str, Redaction]:
    redaction = Redaction()
    return (redactor or Redactor()).redact(text, redaction), redaction


@pytest.mark.parametrize(("text", "secret", "kind"), [
    ("write to lena.o@example.org today", "lena.o@example.org", "EMAIL_ADDRESS"),
    ("call me on 415-555-0198 tonight", "415-555-0198", "PHONE_NUMBER"),
    ("charge 4111 1111 1111 1111 for it", "4111 1111 1111 1111", "CREDIT_CARD"),
    ("pay into DE89 3704 0044 0532 0130 00 please", "DE89 3704 0044 0532 0130 00", "IBAN_CODE"),
    ("the parcel goes to 18 Kingsley Road, Apt 4B tomorrow", "18 Kingsley Road, Apt 4B", "STREET_ADDRESS"),
    ("open https://x.example.com/f?token=abc123 now", "https://x.example.com/f?token=abc123", "URL_SECRET"),
    ("I was born on 14 February 1991 in Leeds", "14 February 1991", "DATE_OF_BIRTH"),
    ("My sister Lena moved away", "Lena", "PERSON"),
    ("we live at 14 Marlowe Gardens now", "14 Marlowe Gardens", "STREET_ADDRESS"),
    ("write to jo dot hart at proton dot me", "jo dot hart at proton dot me", "EMAIL_ADDRESS"),
    ("the wifi password is Tulip-Harbor-88 for guests", "Tulip-Harbor-88", "PASSWORD"),
    ("the door code is 4471, easy", "4471", "PASSWORD"),
    ("key sk-proj-Qw3rTy8uIo9pAs7dFg6hJk5L leaked", "sk-proj-Qw3rTy8uIo9pAs7dFg6hJk5L", "API_KEY"),
    ("token ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4 in the repo", "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4", "API_KEY"),
    ("my plate is KX19 BRT", "KX19 BRT", "LICENSE_PLATE"),
    ("passport number 712204981 expires soon", "712204981", "ID_NUMBER"),
    ("her tax number is 903 118 4420, keep it", "903 118 4420", "ID_NUMBER"),  # digits in groups, by their count
    ("my NIE is X1234567L", "X1234567L", "ID_NUMBER"),  # letters and a run of digits
    ("changed the PIN to 6620, tell nobody", "6620", "PASSWORD"),
    ("the key safe at mum's cottage is 3381#", "3381#", "PASSWORD"),
    ("the app talks to mysql://ana:Plum7tree@10.0.0.5/app", "mysql://ana:Plum7tree@10.0.0.5/app", "URL_SECRET"),
    ("ship it to 8 Rue du Four, Paris", "8 Rue du Four", "STREET_ADDRESS"),
    ("post it to Bahnhofstrasse 1, 8001 Zürich", "8001", "STREET_ADDRESS"),
    ("her birthday is may 3rd", "may 3rd", "DATE_OF_BIRTH"),
    ("she was born on the ninth of March 1990", "ninth of March 1990", "DATE_OF_BIRTH"),
    ("nacida el 3 de junio de 1992", "3 de junio de 1992", "DATE_OF_BIRTH"),
    ("parcel for Prinsengracht 263-A, Amsterdam", "Prinsengracht 263-A", "STREET_ADDRESS"),
    ("ship it to Via Roma 12, Roma", "Via Roma 12", "STREET_ADDRESS"),
    ("my memorable word is lighthouse", "lighthouse", "PASSWORD"),
    ("secret AbCdEf12+GhIjKl34=MnOpQr56StUvWx in the env file", "AbCdEf12+GhIjKl34=MnOpQr56StUvWx", "API_KEY"),
    ("the contract is with Fjord & Pine Ltd now", "Fjord & Pine Ltd", "ORGANIZATION"),
    ("her DL is K7731-40982-11234", "K7731-40982-11234", "ID_NUMBER"),
    ("born 9 mar 1987 in a small town", "9 mar 1987", "DATE_OF_BIRTH"),  # a month in any case
    ("DATE OF BIRTH 4 AUGUST 1975, PLEASE CHECK", "4 AUGUST 1975", "DATE_OF_BIRTH"),
    ("kod do furtki to 5127, nie mów nikomu", "5127", "PASSWORD"),  # code words of other languages
    ("il codice del cancello è 8264", "8264", "PASSWORD"),
    ("alarm 730415 and the spare key is under the pot", "730415", "PASSWORD"),  # a lock or alarm, no "code"
    ("the bike lock is 4-0-8-2 btw", "4-0-8-2", "PASSWORD"),
    ("o CPF dele é 529.982.247-25", "529.982.247-25", "ID_NUMBER"),  # a number by its shape
    ("deploy key 9f8e7d6c5b4a39281706f5e4d3c2b1a0 is in the vault", "9f8e7d6c5b4a39281706f5e4d3c2b1a0", "API_KEY"),
    ("text her on oh seven seven double four one two three nine five", "oh seven seven double four one two three "
     "nine five", "PHONE_NUMBER"),  # digits read aloud
    ("his licence is KA05 20170012345", "KA05 20170012345", "ID_NUMBER"),
    ("post it to Kirsten Flagstads gate 7, Bergen", "Kirsten Flagstads gate 7", "STREET_ADDRESS"),
    ("The password is: hunter2", "hunter2", "PASSWORD"),  # "is" with a colon after it
    ("My door code is: 7731#", "7731#", "PASSWORD"),
])
def test_each_kind_of_personal_data_becomes_a_typed_placeholder(text: str, secret: str, kind: str) -> None:
    out, redaction = redact(text)
    assert secret not in out
    assert f"[{kind}_1]" in out
    assert redaction.restore(out) == text


@pytest.mark.parametrize("text", [
    "we walked 12000 steps today",  # a long number that is a count
    "Order number 4417-2290 shipped, tracking comes later.",  # an order, not a person
    "the RTX 4090 costs $1,599 now",
    "The Amazon parcel with the Ring doorbell came.",  # brands everyone writes, not the user's employer
    "Text from Mum: the NHS letter came.",
    "The Natural History Museum opens at ten.",  # a landmark in a sentence that says nothing of the user
    "I hope you are well",
    "the docs at https://docs.python.org/3/library/re.html explain it",  # a URL without credentials
    "the meeting moved from Tuesday to Wednesday at 10",
    "I paid 1200 dollars for the bike",
    "the gate is open and the alarm is loud",  # a lock or an alarm without a number
    "boarding at gate 12 now",
    "Boarding gate 14 closes in ten minutes.",  # a gate and its number: no Nordic street
])
def test_what_is_not_personal_is_left_alone(text: str) -> None:
    assert redact(text)[0] == text


@pytest.mark.parametrize(("text", "name"), [
    ("Had coffee with Hope after work.", "Hope"),  # a name that is also a word, written as a name
    ("need to call ingrid back about the shed", "ingrid"),  # lower case, and no English word
    ("Went climbing with Bartholomew and Yusuf.", "Yusuf"),  # neither NER nor the list: no English word
    ("ask obi if ngozi is coming", "ngozi"),  # lower case, no list knows it, rare, where a person stands
    ("the booking is under Sanne de Vries.", "Vries"),  # a name with a particle is one name
    ("can you tell hope the dinner moved", "hope"),  # a word, but where a verb of telling puts a person
    ("NAME ON CARD: AMARA NWOSU", "NWOSU"),  # capitals: rare and no word
    ("PLEASE TELL CHIDI OKONKWO-BELL TO CALL", "BELL"),  # the piece after a hyphen is the name's too
    ("remind me to ring tunde adewale about it", "adewale"),  # a lower-case surname beside the first name
    ("Signed today with Niamh Ní Dhomhnaill at the bank.", "Dhomhnaill"),  # an Irish particle between
])
def test_first_names_the_ner_misses_are_found(text: str, name: str) -> None:
    assert name not in redact(text)[0]


@pytest.mark.parametrize("text", [
    "Rose bushes need pruning before the frost.",
    "Summer is my favourite season.",
    "I hope the weather holds.",
    "Mark the boxes for the attic.",
])
def test_names_that_are_words_are_left_alone_where_they_are_the_word(text: str) -> None:
    assert redact(text)[0] == text


def test_a_known_name_that_is_a_word_is_matched_as_written(tmp_path: Path) -> None:
    vault = create_vault(tmp_path / "v.db", "pw", name="Alex Morgan")
    vault.add_document(source="n", kind="note", content="Had lunch with Hope at the harbour.")
    redactor = Redactor(known_entities(vault))
    vault.close()
    assert redact("Hope's car broke down, I hope it is fixed.", redactor)[0] == \
        "[PERSON_1]'s car broke down, I hope it is fixed."


def test_a_place_beside_a_postcode_is_replaced_too() -> None:
    out = redact("Send it to 4 Gower Mews, London WC1E 6HA please.")[0]
    assert "London" not in out and "WC1E" not in out and "Gower" not in out


def test_a_value_keeps_its_placeholder_through_one_request_and_comes_back() -> None:
    redaction = Redaction()
    redactor = Redactor()
    first = redactor.redact("Ingrid Solberg called from Oslo.", redaction)
    second = redactor.redact("Tell Ingrid Solberg that Oslo is fine.", redaction)
    assert "Ingrid" not in first + second and "Oslo" not in first + second
    person = next(p for p, v in redaction.placeholders.items() if v == "Ingrid Solberg")
    assert person in first and person in second
    assert redaction.restore(f"{person} says hi") == "Ingrid Solberg says hi"


def test_what_the_vault_knows_goes_first(tmp_path: Path) -> None:
    vault = create_vault(tmp_path / "v.db", "pw", name="Mara Lindqvist")
    vault.add_documents([("chat.jsonl", "turn", "see you at the lake", 1.0, "Jonas")])
    vault.upsert_fact("cat name", "Pixel", source="user", confidence=1.0)
    vault.upsert_fact("lives in", "Tromso", source="user", confidence=1.0)
    known = {(e.text, e.kind) for e in known_entities(vault)}
    assert {("Mara Lindqvist", "PERSON"), ("Mara", "PERSON"), ("Jonas", "PERSON"), ("Pixel", "PERSON"),
            ("Tromso", "LOCATION")} <= known
    # Lower case, no context: NER alone finds none of these; the vault's knowledge does.
    out, _ = redact("pixel and mara went to tromso with jonas", Redactor(sorted(known_entities(vault),
                                                                                key=lambda e: e.text)))
    for word in ("pixel", "mara", "tromso", "jonas"):
        assert word not in out
    vault.close()


def test_a_name_found_in_one_document_is_known_everywhere_until_forgotten(tmp_path: Path) -> None:
    vault = create_vault(tmp_path / "v.db", "pw")
    vault.add_documents([("n.txt", "txt", "Dinner with Amara Nwosu and her brother on Friday.", 1.0)])
    assert any(e.text == "Amara Nwosu" for e in known_entities(vault))
    vault.forget(query="Amara")
    assert not any("Amara" in e.text for e in known_entities(vault))
    assert vault.document_entities() == {}
    vault.close()


def test_consent_none_sends_nothing_and_full_sends_as_is(tmp_path: Path) -> None:
    vault = create_vault(tmp_path / "v.db", "pw", name="Mara")
    settings = Settings(home=tmp_path, consent={"cloud": "none", "expert": "full"})
    gate = PrivacyGate(settings, vault)
    with pytest.raises(ConsentError, match="consent: none"):
        gate.open("cloud", "ask")
    egress = gate.open("expert:finance", "ask")
    assert egress.redact("Mara's IBAN is DE89 3704 0044 0532 0130 00") == "Mara's IBAN is DE89 3704 0044 0532 0130 00"
    redacted = PrivacyGate(Settings(home=tmp_path), vault).open("cloud", "ask")
    body = redacted.redact("Mara's email is mara@example.org")
    PrivacyGate(Settings(home=tmp_path), vault).record(redacted, body)
    logged = vault.egress()[-1]
    assert (logged.destination, logged.consent, logged.redacted_text) == ("cloud", "redacted", body)
    assert logged.entities == {"PERSON": 1, "EMAIL_ADDRESS": 1}
    assert "mara@example.org" not in body
    vault.close()


def test_the_gate_works_with_the_network_blocked(tmp_path: Path) -> None:
    # Presidio downloads a spaCy model it cannot find, and tldextract fetches the public suffix list: neither may.
    script = textwrap.dedent("""
        import socket
        def refuse(*args, **kwargs):
            raise OSError("network blocked by the test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        from pllm.personal.privacy import Redactor, Redaction
        r = Redaction()
        out = Redactor().redact("Email Chloe Dubois at chloe@example.fr about Lyon", r)
        assert "chloe@example.fr" not in out and "Chloe Dubois" not in out, out
        print(out)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(tmp_path)})  # an empty cache: nothing found there
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[EMAIL_ADDRESS_1]" in proc.stdout


def test_a_value_counts_as_hidden_when_each_of_its_letters_and_digits_is_replaced() -> None:
    from pllm.bench.privacy import _hidden
    from pllm.personal.pii import Span

    text = "From: Wiktoria Zielinska-Nowak, 12 Ash Lawn"
    first, last = text.index("Wiktoria"), text.index("Zielinska")
    whole = (first, text.index(","))
    apart = [Span(first, first + 8, "PERSON", "ner"), Span(last, last + 9, "PERSON", "ner"),
             Span(last + 10, whole[1], "PERSON", "ner")]
    assert _hidden(text, *whole, apart)  # the space and the hyphen between replaced pieces give nothing away
    assert not _hidden(text, *whole, apart[:2])  # "Nowak" left: a part of the name leaks
    assert not _hidden(text, *whole, [Span(first, whole[1] - 1, "PERSON", "ner")])  # one letter left is a miss too


def test_redaction_on_the_labelled_set_finds_nearly_everything() -> None:
    sentences = load_sentences(DEFAULT_DATA)
    assert sum(len(s.pii) for s in sentences) >= 80 and any(not s.pii for s in sentences)
    score = score_redaction(sentences, redaction_with_vault(sentences))
    assert score.recall >= 0.95, score.misses
    assert score.precision >= 0.9, score.false_positives


def test_a_brand_is_hidden_where_it_is_the_users_employer() -> None:
    out, _ = redact("I work at Amazon now, in the Leeds office.")
    assert "Amazon" not in out and "[ORGANIZATION_1]" in out
    assert "Amazon" in redact("The Amazon parcel came.")[0]


def test_a_name_with_a_particle_is_one_placeholder() -> None:
    out, redaction = redact("the booking is under Sanne de Vries.")
    assert out == "the booking is under [PERSON_1]." and redaction.placeholders["[PERSON_1]"] == "Sanne de Vries"
