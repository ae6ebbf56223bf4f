"""The real SQLCipher vault: encryption, wrong keys, durability, forgetting, export, rekey, migrations."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pllm.errors import UsageError, VaultMissingError, WrongPassphraseError
from pllm.personal.migrations import MIGRATIONS, applied, migrate
from pllm.personal.vault import Vault, content_hash, create_vault, open_vault

Scan = Callable[..., list[Path]]

CANARY = "CANARY-" + secrets.token_hex(8)  # made at run time: no file holds it unless we wrote it


@pytest.fixture
def vault(pllm_home: Path) -> Vault:
    v = create_vault(pllm_home / "vault.db", "s3cret", name="Mara")
    yield v
    v.close()


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_create_and_reopen(vault: Vault, pllm_home: Path) -> None:
    assert vault.add_document(source="note", kind="note", content="My cat is called Pixel.")
    vault.close()
    again = open_vault(pllm_home / "vault.db", "s3cret")
    assert [d.content for d in again.documents()] == ["My cat is called Pixel."]
    assert again.user_name == "Mara"
    assert oct((pllm_home / "vault.db").stat().st_mode & 0o777) == "0o600"
    again.close()


def test_the_file_is_encrypted(vault: Vault, pllm_home: Path) -> None:
    vault.add_document(source="note", kind="note", content=f"secret {CANARY}")
    vault.close()
    raw = (pllm_home / "vault.db").read_bytes()
    assert not raw.startswith(b"SQLite format 3")
    assert CANARY.encode() not in raw


def test_wrong_passphrase_changes_no_byte(vault: Vault, pllm_home: Path) -> None:
    vault.add_document(source="note", kind="note", content="something")
    vault.close()
    before = file_hashes(pllm_home)
    with pytest.raises(WrongPassphraseError, match=r"^wrong passphrase or not a pllm vault$"):
        open_vault(pllm_home / "vault.db", "not-it")
    assert file_hashes(pllm_home) == before


def test_a_file_that_is_not_a_vault(tmp_path: Path) -> None:
    junk = tmp_path / "vault.db"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(WrongPassphraseError):
        open_vault(junk, "s3cret")


def test_missing_vault_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(VaultMissingError, match="pllm init"):
        open_vault(tmp_path / "nope.db", "s3cret")


def test_create_refuses_an_existing_file(vault: Vault, pllm_home: Path) -> None:
    with pytest.raises(UsageError, match="already exists"):
        create_vault(pllm_home / "vault.db", "other")


def test_documents_are_deduplicated(vault: Vault) -> None:
    added, dupes = vault.add_documents([("a", "txt", "same text", 1.0), ("b", "txt", "same   text", 2.0),
                                        ("c", "txt", "other", 3.0)])
    assert (added, dupes) == (2, 1)
    assert vault.count("documents") == 2


def test_interactions_and_feedback(vault: Vault) -> None:
    i = vault.log_interaction(prompt="hi", answer="hello", latency_s=0.2, tokens=3, personal=True, client="cli",
                              sentiment=0.5)
    vault.add_feedback(i, "up")
    vault.add_feedback(i, "edit", "Hello, Mara!")
    vault.add_feedback(i, "rating", "4")
    assert [f.kind for f in vault.feedback()] == ["up", "edit", "rating"]
    (logged,) = vault.interactions()
    assert (logged.client, logged.personal, 0 <= logged.hour < 24) == ("cli", True, True)
    with pytest.raises(UsageError, match="1 to 5"):
        vault.add_feedback(i, "rating", "9")
    with pytest.raises(UsageError, match="unknown feedback"):
        vault.add_feedback(i, "meh")
    with pytest.raises(UsageError, match="no interaction"):
        vault.add_feedback(999, "up")


def test_facts_keep_one_value_per_key(vault: Vault) -> None:
    vault.upsert_fact("cat name", "Pixel", source="document:1", confidence=0.9)
    vault.upsert_fact("cat name", "Pix", source="model", confidence=0.5)  # much less sure: ignored
    assert vault.facts()[0].value == "Pixel"
    vault.upsert_fact("cat name", "Luna", source="interaction:3", confidence=0.9)  # the user said so later
    assert [(f.key, f.value) for f in vault.facts()] == [("cat name", "Luna")]
    assert [(p.key, p.value) for p in vault.fact_history()] == [("cat name", "Pixel")]  # the old value, kept


def test_a_changed_fact_keeps_its_newest_statement_active(vault: Vault) -> None:
    day = 86400.0
    vault.upsert_fact("lives in", "Oslo", source="document:1", confidence=0.9, stated_at=10 * day)
    vault.upsert_fact("lives in", "Bergen", source="document:3", confidence=0.9, stated_at=30 * day)
    vault.upsert_fact("lives in", "Tromso", source="document:2", confidence=0.9, stated_at=20 * day)  # older news
    vault.upsert_fact("lives in", "Bergen", source="document:4", confidence=0.9, stated_at=31 * day)  # restated
    vault.upsert_fact("lives in", "Lisbon", source="document:5", confidence=0.9, subject="Melanie", stated_at=day)
    current = {(f.subject, f.key): (f.value, f.updated_at) for f in vault.facts()}
    assert current == {("", "lives in"): ("Bergen", 31 * day), ("Melanie", "lives in"): ("Lisbon", day)}
    assert sorted(p.value for p in vault.fact_history()) == ["Oslo", "Tromso"]
    report = vault.forget(query="tromso")
    assert report.facts == 1 and [p.value for p in vault.fact_history()] == ["Oslo"]  # history forgets too


def test_forget_a_query_leaves_no_trace(vault: Vault, pllm_home: Path, files_holding: Scan) -> None:
    vault.add_document(source="note", kind="note", content=f"My locker code is {CANARY}.")
    vault.add_document(source="note", kind="note", content="I like tea.")
    i = vault.log_interaction(prompt=f"remember {CANARY}", answer="ok", latency_s=0.1, tokens=1, personal=True,
                              client="cli", sentiment=0.0)
    vault.add_feedback(i, "up")
    vault.upsert_fact("locker code", CANARY, source="document:1", confidence=0.9)
    report = vault.forget(query=CANARY.lower())
    assert (report.documents, report.interactions, report.facts) == (1, 1, 1)
    assert [d.content for d in vault.documents()] == ["I like tea."]
    assert vault.count("feedback") == 0  # cascades with its interaction
    assert content_hash(f"My locker code is {CANARY}.") in vault.forgotten_hashes()
    assert CANARY not in str(vault.export())
    vault.close()
    assert files_holding(CANARY.encode(), pllm_home) == []


def test_forget_a_time_range_and_everything(vault: Vault) -> None:
    vault.add_documents([("old", "txt", "old note", time.time() - 10 * 86400), ("new", "txt", "new note", time.time())])
    report = vault.forget(until=time.time() - 86400)
    assert report.documents == 1
    assert [d.content for d in vault.documents()] == ["new note"]
    vault.forget(everything=True)
    assert vault.count("documents") == 0
    with pytest.raises(UsageError, match="say what to forget"):
        vault.forget()


def test_rekey(vault: Vault, pllm_home: Path) -> None:
    vault.add_document(source="note", kind="note", content="kept across the rekey")
    vault.rekey("n3w-pass")
    assert [d.content for d in vault.documents()] == ["kept across the rekey"]
    vault.close()
    with pytest.raises(WrongPassphraseError):
        open_vault(pllm_home / "vault.db", "s3cret")
    again = open_vault(pllm_home / "vault.db", "n3w-pass")
    assert again.count("documents") == 1
    again.close()
    assert sorted(p.name for p in pllm_home.iterdir()) == ["vault.db"]


def test_export_holds_everything(vault: Vault) -> None:
    vault.add_document(source="n", kind="note", content="doc")
    i = vault.log_interaction(prompt="p", answer="a", latency_s=0.1, tokens=1, personal=False, client="cli",
                              sentiment=0.0)
    vault.add_feedback(i, "down")
    vault.upsert_fact("k", "v", source="user", confidence=1.0)
    vault.log_egress(destination="cloud", purpose="augment", redacted_text="[NAME_1] likes tea", placeholders=1)
    data = vault.export()
    assert data["user"]["name"] == "Mara"
    assert [len(data[k]) for k in ("documents", "interactions", "feedback", "facts", "egress")] == [1, 1, 1, 1, 1]


KILL_SCRIPT = """
import sys, time
from pathlib import Path
from pllm.personal.vault import open_vault
v = open_vault(Path(sys.argv[1]), "s3cret")
v.add_documents([("committed", "txt", f"committed {n}", 1.0) for n in range(50)])
v.conn.execute("BEGIN IMMEDIATE")
for n in range(100000):
    v.conn.execute("INSERT INTO documents (source, kind, created_at, ingested_at, content, content_hash, tokens)"
                   " VALUES ('pending', 'txt', 1, 1, ?, ?, 1)", (f"pending {n}", f"h{n}"))
    if n == 2000:
        print("writing", flush=True)
time.sleep(60)
"""


def test_a_crash_mid_write_loses_nothing_committed(vault: Vault, pllm_home: Path) -> None:
    vault.close()
    path = pllm_home / "vault.db"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    again = open_vault(path, "s3cret")
    assert again.count("documents") == 50
    assert again.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    again.close()


def test_migrations_on_a_blank_database_and_from_an_older_schema(tmp_path: Path) -> None:
    import sqlcipher3

    conn = sqlcipher3.connect(str(tmp_path / "old.db"), isolation_level=None)
    conn.execute("PRAGMA key = 'k'")
    first_name, first = MIGRATIONS[0]
    conn.execute("BEGIN")
    first(conn)
    conn.execute("COMMIT")
    applied(conn)
    conn.execute("INSERT INTO _pllm_migrations VALUES (?, 0)", (first_name,))
    ran = migrate(conn)
    assert ran == [name for name, _ in MIGRATIONS[1:]]
    assert migrate(conn) == []  # idempotent
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"documents", "interactions", "feedback", "profile_facts", "egress_log", "forgotten", "embeddings"} <= tables
    blank = sqlcipher3.connect(str(tmp_path / "blank.db"), isolation_level=None)
    blank.execute("PRAGMA key = 'k'")
    assert migrate(blank) == [name for name, _ in MIGRATIONS]


def test_no_plaintext_in_the_temp_dir(vault: Vault, pllm_home: Path, files_holding: Scan) -> None:
    started = time.time() - 1
    vault.add_document(source="note", kind="note", content=f"temp check {CANARY}")
    vault.forget(query="nothing-matches-this")  # VACUUM uses temp space: it must stay in memory
    vault.close()
    assert files_holding(CANARY.encode(), pllm_home, Path(tempfile.gettempdir()), since=started) == []
