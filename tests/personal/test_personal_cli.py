"""The personal loop end to end through the real `pllm` script: the real vault, the real model, no mocks."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]
PASS = {"PLLM_PASSPHRASE": "s3cret"}
DEFAULT_RETRIEVAL = {"PLLM_EMBEDDINGS": "true"}  # the default; the suite turns the embeddings off for its speed


@pytest.fixture
def home(pllm: Run, pllm_home: Path) -> Path:
    proc = pllm("init", "--name", "Mara", env=PASS)
    assert proc.returncode == 0, proc.stderr
    return pllm_home


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_personal_answers_use_the_vault(pllm: Run, home: Path, tmp_path: Path) -> None:
    note = write(tmp_path / "in" / "note.txt", "My cat is called Pixel and I live in Tromso")
    ingested = pllm("ingest", str(note), env={**PASS, **DEFAULT_RETRIEVAL})
    assert ingested.returncode == 0, ingested.stderr
    personal = pllm("ask", "What is my cat called?", env=PASS)
    assert personal.returncode == 0, personal.stderr
    assert "Pixel" in personal.stdout
    plain = pllm("ask", "What is my cat called?", "--no-personal", env=PASS)
    assert plain.returncode == 0
    assert "Pixel" not in plain.stdout
    shown = pllm("ask", "What is my cat called?", "--json", "--show-context", env=PASS)
    assert "document:1" in json.loads(shown.stdout)["context"]
    # the default retrieval: the passage was embedded at ingest, and the meaning finds it with the words
    shown = pllm("ask", "What is my cat called?", "--json", "--show-context", env={**PASS, **DEFAULT_RETRIEVAL})
    assert "[document:1, bm25+embedding]" in json.loads(shown.stdout)["context"]


def test_a_canary_never_reaches_the_disk_in_plaintext(pllm: Run, home: Path, tmp_path: Path,
                                                      files_holding: Callable[..., list[Path]]) -> None:
    canary = "CANARY-" + secrets.token_hex(8)
    source = write(tmp_path / "in" / "secret.md", f"# Locker\n\nMy locker code is {canary}.\n\nI like tea.")
    started = time.time() - 1
    scanned = (home, Path(tempfile.gettempdir()))
    assert pllm("ingest", str(source), env=PASS).returncode == 0
    assert pllm("ask", f"Remember {canary} for me", env=PASS).returncode == 0
    exported = pllm("profile", "export", env=PASS)
    assert canary in exported.stdout  # it is in the vault...
    leaks = [p for p in files_holding(canary.encode(), *scanned, since=started) if p != source]
    assert leaks == []  # ...and nowhere on disk in plaintext
    forgot = pllm("profile", "forget", canary, "--yes", "--json", env=PASS)
    assert forgot.returncode == 0, forgot.stderr
    assert json.loads(forgot.stdout)["documents"] == 1
    assert json.loads(forgot.stdout)["interactions"] == 1
    after = pllm("profile", "export", env=PASS)
    assert canary not in after.stdout
    assert "I like tea." in after.stdout  # only the passage holding it went, the heading with it
    assert "# Locker" not in after.stdout
    assert [p for p in files_holding(canary.encode(), *scanned, since=started) if p != source] == []


def test_a_wrong_passphrase_exits_2_and_touches_nothing(pllm: Run, home: Path) -> None:
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in home.iterdir()}
    for args in (("ask", "hi"), ("profile", "show"), ("profile", "export")):
        proc = pllm(*args, env={"PLLM_PASSPHRASE": "wrong"})
        assert proc.returncode == 2
        assert proc.stderr == "error: wrong passphrase or not a pllm vault\n"
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in home.iterdir()} == before


def test_without_a_vault_commands_say_how_to_create_one(pllm: Run) -> None:
    proc = pllm("profile", "show", env=PASS)
    assert proc.returncode == 2
    assert "pllm init" in proc.stderr and proc.stderr.count("\n") == 1
    asked = pllm("ask", "Say hello.", "-n", "8")  # asking still works, unpersonalised, and says so
    assert asked.returncode == 0 and asked.stdout.strip()
    assert "pllm init" in asked.stderr


def test_no_passphrase_and_no_terminal(pllm: Run, home: Path) -> None:
    proc = pllm("ask", "hi", env={"PLLM_PASSPHRASE": ""})
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no passphrase: set PLLM_PASSPHRASE")


def test_init_twice_is_refused(pllm: Run, home: Path) -> None:
    proc = pllm("init", env=PASS)
    assert proc.returncode == 2 and "already exists" in proc.stderr


def test_a_malformed_file_adds_nothing_from_it(pllm: Run, home: Path, tmp_path: Path) -> None:
    good = write(tmp_path / "in" / "good.txt", "I enjoy sailing on the fjord.")
    bad = write(tmp_path / "in" / "bad.jsonl", '{"text": "first line is fine"}\n{"text": oops}\n')
    proc = pllm("ingest", str(good), str(bad), env=PASS)
    assert proc.returncode == 2
    assert f"error: {bad}:2: not valid JSON" in proc.stderr
    docs = json.loads(pllm("profile", "export", env=PASS).stdout)["documents"]
    assert [d["content"] for d in docs] == ["I enjoy sailing on the fjord."]
    again = pllm("ingest", str(good), env=PASS)
    assert again.returncode == 0 and "│     0 │       1 │" in again.stdout  # a duplicate is skipped


def test_chat_feedback_and_facts_reach_the_profile(pllm: Run, home: Path) -> None:
    turns = "My dog is called Rex.\n/good\n/edit Noted: Rex.\n/rate 5\n/rate 9\n/exit\n"
    proc = pllm("chat", "-n", "16", env=PASS, stdin=turns)
    assert proc.returncode == 0, proc.stderr
    assert "a whole number from 1 to 5" in proc.stderr
    profile = json.loads(pllm("profile", "show", "--json", env=PASS).stdout)
    assert profile["feedback"]["up"] == 1 and profile["feedback"]["edit"] == 1 and profile["feedback"]["ratings"] == 1
    assert {"key": "dog name", "value": "Rex"}.items() <= profile["facts"][0].items()
    assert profile["counts"]["interactions"] == 1
    assert profile["style"]["preferred_answer_words"] == 2


def test_rekey_then_the_old_passphrase_fails(pllm: Run, home: Path) -> None:
    assert pllm("profile", "rekey", env={**PASS, "PLLM_NEW_PASSPHRASE": "n3w"}).returncode == 0
    assert pllm("profile", "show", env=PASS).returncode == 2
    assert pllm("profile", "show", env={"PLLM_PASSPHRASE": "n3w"}).returncode == 0


def test_forget_needs_confirmation_without_a_terminal(pllm: Run, home: Path) -> None:
    proc = pllm("profile", "forget", "--all", env=PASS)
    assert proc.returncode == 2 and "--yes" in proc.stderr
    bad_date = pllm("profile", "forget", "--since", "last tuesday", "--yes", env=PASS)
    assert bad_date.returncode == 2 and "ISO date" in bad_date.stderr


def test_degenerate_answers_never_crowd_out_the_users_documents(pllm: Run, home: Path, tmp_path: Path) -> None:
    """Twenty looping answers in the log, some even thumbed up; the next question still finds the user's note."""
    from pllm.personal.vault import open_vault

    note = write(tmp_path / "in" / "boat.txt", "Our sailing boat is called Seagull and sleeps in Bodo harbour.")
    assert pllm("ingest", str(note), env=PASS).returncode == 0
    with open_vault(home / "vault.db", "s3cret") as vault:
        for n in range(20):
            said = vault.log_interaction(prompt=f"What is the boat called, question {n}?",
                                         answer="A: A: A: A: A: A: A: A: A:" if n % 2 else "",
                                         latency_s=0.1, tokens=9, personal=True, client="cli", sentiment=0.0,
                                         adapter_version=None, created_at=time.time())
            if n % 4 == 1:
                vault.add_feedback(said, "up")
    shown = pllm("ask", "What is our sailing boat called?", "--json", "--show-context", env=PASS)
    assert shown.returncode == 0, shown.stderr
    context = json.loads(shown.stdout)["context"]
    assert "document:1" in context and "interaction:" not in context
    assert "Seagull" in json.loads(shown.stdout)["text"]


def test_an_imported_conversation_attributes_facts_to_their_speakers(pllm: Run, home: Path, tmp_path: Path) -> None:
    turns = [("Caroline", "I live in Oslo and my dog is called Rex.", "2023-05-01T10:00:00"),
             ("Melanie", "I live in Bergen. I work as a nurse.", "2023-05-01T10:01:00"),
             ("Melanie", "My dog is called Bella.", "2023-05-01T10:02:00"),
             ("Caroline", "Big news: I live in Trondheim now.", "2023-09-12T18:00:00")]
    chat = write(tmp_path / "in" / "chat.jsonl", "\n".join(
        json.dumps({"speaker": who, "text": text, "timestamp": when}) for who, text, when in turns))
    proc = pllm("ingest", str(chat), "--me", "Caroline", env=PASS)
    assert proc.returncode == 0, proc.stderr
    shown = pllm("profile", "show", "--json", env=PASS)
    assert shown.returncode == 0, shown.stderr
    profile = json.loads(shown.stdout)
    mine = {f["key"]: f["value"] for f in profile["facts"]}
    theirs = {(f["subject"], f["key"]): f["value"] for f in profile["others"]}
    assert mine == {"lives in": "Trondheim", "dog name": "Rex"}  # the newest value only; no nurse, no Bella
    assert theirs == {("Melanie", "lives in"): "Bergen", ("Melanie", "works as"): "nurse",
                      ("Melanie", "dog name"): "Bella"}
    exported = json.loads(pllm("profile", "export", env=PASS).stdout)
    assert [(f["key"], f["value"]) for f in exported["fact_history"]] == [("lives in", "Oslo")]
    assert {d["speaker"] for d in exported["documents"]} == {"", "Melanie"}
