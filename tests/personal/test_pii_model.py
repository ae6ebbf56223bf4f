"""The privacy gate's second opinion: the packaged Qwen2.5 1.5B Instruct, loaded in the device's process, reads a
text for personal values the rules cannot see; what it names is kept only where its shape allows."""

from __future__ import annotations

import pytest

from pllm.config import Settings
from pllm.personal.pii_model import PiiModel, load_pii_model, plausible
from pllm.personal.privacy import PrivacyGate, Redaction, Redactor


def _plausible(text: str, value: str, kind: str = "PERSON") -> bool:
    start = text.index(value)
    return plausible(text, start, start + len(value), kind)


@pytest.mark.parametrize(("text", "value", "kept"), [
    ("sign the lease on Monday", "lease", False),  # a common word the model sometimes names
    ("sign the lease on Monday", "Monday", False),
    ("tell hope the car is ready", "hope", True),  # a common word, but a first name
    ("ring me on oh seven nine one one four nine six two", "oh seven nine one one four nine six two", True),
    ("the headphones were £1,249 with promo code SPRING20", "£1,249", False),
    ("the headphones were £1,249 with promo code SPRING20", "SPRING20", False),  # a shop's code, by the word before
    ("order 112-4839201-5539017 shipped", "112-4839201-5539017", False),
    ("my NIE is X4729105L", "X4729105L", True),
    ("dinner with Thandiwe at eight", "Thandiwe", True),
    ("visa form: no previous refusals", "no previous refusals", False),
])
def test_what_the_model_names_is_kept_only_where_its_shape_allows(text: str, value: str, kept: bool) -> None:
    assert _plausible(text, value) is kept


def test_the_default_gate_reads_with_an_instruct_t_model_and_loads_it_only_to_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pllm.personal.pii_model import gate_reader

    monkeypatch.delenv("PLLM_GATE_MODEL")  # the suite's conftest turns it off; this is the default
    assert Settings().gate_model == "auto"
    reader = PrivacyGate(Settings(foundation_model="qwen2.5-1.5b")).redactor.model
    assert isinstance(reader, PiiModel) and reader._runtime is None  # made, not loaded: a gate costs nothing yet
    assert "reads each outgoing text" in gate_reader(Settings(foundation_model="qwen2.5-1.5b"))
    assert load_pii_model(Settings(foundation_model="gemma-3-270m")) is None  # a base model cannot follow it
    assert "base model or not installed" in gate_reader(Settings(foundation_model="gemma-3-270m"))
    assert load_pii_model(Settings(gate_model="none")) is None
    assert PrivacyGate(Settings(gate_model="none")).redactor.model is None
    # a T-model given as a file: an instruct model by its chat template, read from the header alone
    from pllm.lm.models import resolve_foundation_model, resolve_model

    with_template = resolve_model(Settings()).path  # the P-model file: an instruct model
    assert isinstance(load_pii_model(Settings(foundation_model=str(with_template))), PiiModel)
    base = resolve_foundation_model(Settings(foundation_model="gemma-3-270m")).path
    assert load_pii_model(Settings(foundation_model=str(base))) is None


@pytest.fixture(scope="module")
def model() -> PiiModel:
    loaded = load_pii_model(Settings(gate_model="foundation", foundation_model="qwen2.5-1.5b"))
    assert loaded is not None
    return loaded


@pytest.mark.slow
def test_the_packaged_model_reads_secrets_no_rule_has_a_word_for(model: PiiModel) -> None:
    texts = {"remind me that the storage unit opens with 5529 on the keypad": "5529",
             "for the router it's the usual one: tangerine-Walrus-88, don't share it": "tangerine-Walrus-88"}
    for text, secret in texts.items():
        assert secret in Redactor([]).redact(text, Redaction())  # no rule knows these shapes
        assert secret not in Redactor([], model=model).redact(text, Redaction())


@pytest.mark.slow
def test_the_packaged_model_names_nothing_in_general_knowledge(model: PiiModel) -> None:
    assert model.spans("Water boils at 100 degrees at sea level and the Moon orbits the Earth.") == []


class _Answers:
    """The runtime's `chat` as the model would answer, from a queue (the real model is tested below)."""

    def __init__(self, *answers: str) -> None:
        self.answers, self.asked = list(answers), 0

    def chat(self, messages: list[dict[str, str]], config: object) -> object:
        self.asked += 1
        return type("Completion", (), {"text": self.answers.pop(0)})()


def test_the_answer_is_read_matched_as_written_and_cached() -> None:
    runtime = _Answers('[{"v": "Will", "k": "PERSON"}, {"v": "Thandiwe", "k": "PERSON"}]')
    model = PiiModel(runtime)  # type: ignore[arg-type]
    text = "Will said Thandiwe will call thandiwe back"
    spans = [(text[s.start:s.end], s.kind) for s in model.spans(text)]
    # "Will" is also a word: only as written; a name that is no word in any case
    assert spans == [("Will", "PERSON"), ("Thandiwe", "PERSON"), ("thandiwe", "PERSON")]
    model.spans(text)
    assert runtime.asked == 1  # the same text is not read twice


def test_an_answer_cut_short_loses_only_its_piece() -> None:
    long_text = " ".join(["word"] * 500) + " call Thandiwe"  # no full stop: cut at spaces into pieces
    runtime = _Answers('[{"v": "Thandi', '[{"v": "Thandiwe", "k": "PERSON"}]')
    model = PiiModel(runtime)  # type: ignore[arg-type]
    assert [v for v, _ in model.values(long_text)] == ["Thandiwe"] and runtime.asked == 2


def test_the_example_bank_is_the_development_sets_and_never_a_held_out_one() -> None:
    from pllm.bench.privacy import HELD_OUT_SETS, example_bank_rows
    from pllm.personal.pii_model import example_bank

    bank = example_bank()
    rows = example_bank_rows()
    assert [(e.set, e.text) for e in bank] == [(r["set"], r["text"]) for r in rows]  # rewrite it if this fails
    assert len(bank) >= 400 and not {e.set for e in bank} & set(HELD_OUT_SETS)
    assert any(not e.answer for e in bank) and any(k == "SECRET" for e in bank for _, k in e.answer)


def test_the_nearest_examples_are_alike_in_language_and_shape_and_a_set_can_be_withheld() -> None:
    from pllm.personal.pii_model import example_bank, nearest_examples

    text = "kod do bramy to 4471, mieszkam na ul. Kwiatowa 3/12"  # Polish: a gate code and a street
    near = nearest_examples(text)
    assert any("ul." in e.text or "kod" in e.text for e in near[-2:])  # the most alike come last, nearest the text
    assert any(not e.answer for e in near)  # and one with nothing personal in it
    withheld = frozenset({near[-1].set})
    assert all(e.set not in withheld for e in nearest_examples(text, withheld))
    own = example_bank()[0].text
    assert all(e.text != own for e in nearest_examples(own))  # a bank sentence is never its own example


def test_an_evaluated_set_is_withheld_from_the_model_whole() -> None:
    from pllm.personal.pii_model import example_bank

    runtime = _Answers("[]", "[]")
    model = PiiModel(runtime)  # type: ignore[arg-type]
    first = example_bank()[0]
    model.withhold_sets_of([first.text, "a sentence of no set"])
    assert model.withheld == {first.set}
    shown = [m["content"] for m in model._messages(first.text)[:-1]]  # all but the text read
    assert not any(e.text in shown for e in example_bank() if e.set == first.set)


def test_ner_names_stand_where_the_model_read_them_too_and_all_where_it_could_not_read() -> None:
    text = "Der Hausmeister sagt, Thandiwe Dube holt den Schlüssel"  # NER takes German nouns for names
    assert "Schlüssel" in [text[s.start:s.end] for s in Redactor().spans(text)]  # the rules alone
    agreed = Redactor(model=PiiModel(_Answers('[{"v": "Thandiwe Dube", "k": "PERSON"}]')))  # type: ignore[arg-type]
    assert [text[s.start:s.end] for s in agreed.spans(text)] == ["Thandiwe Dube"]
    cut = Redactor(model=PiiModel(_Answers('[{"v": "Thandiwe')))  # type: ignore[arg-type]
    assert "Schlüssel" in [text[s.start:s.end] for s in cut.spans(text)]  # an answer cut short vetoes nothing


def test_a_name_the_model_named_confirms_ner_though_its_shape_is_not_replaced_alone() -> None:
    text = "Call Jo tomorrow, she knows Thandiwe Dube."  # "Jo": too short for the model's value to stand alone
    answer = '[{"v": "Jo", "k": "PERSON"}, {"v": "Thandiwe Dube", "k": "PERSON"}]'
    assert [text[s.start:s.end] for s in PiiModel(_Answers(answer)).spans(text)] == ["Thandiwe Dube"]  # type: ignore[arg-type]
    both = Redactor(model=PiiModel(_Answers(answer)))  # type: ignore[arg-type]
    assert [text[s.start:s.end] for s in both.spans(text)] == ["Jo", "Thandiwe Dube"]  # NER's "Jo", confirmed
    full = '[' + ", ".join(f'{{"v": "Name{n}", "k": "PERSON"}}' for n in range(16)) + ']'
    assert PiiModel(_Answers(full)).reading(text)[1] is False  # type: ignore[arg-type]  # a full list: maybe more
