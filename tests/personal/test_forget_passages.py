"""Forget what is named, keep the rest: a file is stored as its passages (paragraphs, a diary's dated entries), so
forgetting a name removes only the passages that hold it; --whole-file takes the file; older vaults migrate.

The real `pllm` script, the real SQLCipher vault, no mocks.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from pllm.config import Settings
from pllm.personal.adapters import AdapterStore
from pllm.personal.forget import forget_everywhere
from pllm.personal.ingest import parse_file
from pllm.personal.migrations import MIGRATIONS, applied, m010_passages
from pllm.personal.retrieve import Retriever
from pllm.personal.vault import Vault, content_hash, create_vault, open_vault

Run = Callable[..., subprocess.CompletedProcess[str]]
Scan = Callable[..., list[Path]]
PASS = {"PLLM_PASSPHRASE": "s3cret"}
BOAT, TEA = "My boat is called Quillfeather.", "My tea is smoked lapsang."
NOTES = f"{BOAT}\n\n{TEA}\n"


@pytest.fixture
def home(pllm: Run, pllm_home: Path) -> Path:
    proc = pllm("init", "--name", "Mara", env=PASS)
    assert proc.returncode == 0, proc.stderr
    return pllm_home


@pytest.fixture
def vault(pllm_home: Path) -> Vault:
    v = create_vault(pllm_home / "vault.db", "s3cret")
    yield v
    v.close()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def exported(pllm: Run) -> list[str]:
    proc = pllm("profile", "export", env=PASS)
    assert proc.returncode == 0, proc.stderr
    return [d["content"] for d in json.loads(proc.stdout)["documents"]]


def found(home: Path, question: str) -> list[str]:
    """What retrieval finds in the vault for `question` (BM25, as `pllm ask` retrieves without an embedder)."""
    with open_vault(home / "vault.db", "s3cret") as v:
        return [h.item.text for h in Retriever.from_vault(v).search(question)]


def test_forgetting_a_name_keeps_the_other_paragraph(pllm: Run, home: Path, tmp_path: Path,
                                                     files_holding: Scan) -> None:
    notes = write(tmp_path / "in" / "notes.txt", NOTES)
    started = time.time() - 1
    assert pllm("ingest", str(notes), env=PASS).returncode == 0
    assert exported(pllm) == [BOAT, TEA]  # two passages of one file
    forgot = pllm("profile", "forget", "Quillfeather", "--yes", "--json", env=PASS)
    assert forgot.returncode == 0, forgot.stderr
    assert json.loads(forgot.stdout)["documents"] == 1
    assert exported(pllm) == [TEA]
    assert found(home, "What tea do I drink?") == [TEA]
    assert found(home, "What is my boat called? Quillfeather") == []
    asked = pllm("ask", "What tea do I drink?", "--json", "--show-context", env=PASS)
    assert asked.returncode == 0, asked.stderr
    context = json.loads(asked.stdout)["context"]
    assert "lapsang" in context and "Quillfeather" not in context
    scanned = (home, Path(tempfile.gettempdir()))
    other_tests = tmp_path.parents[1]  # the run's temp root: other tests (the other xdist worker) write these notes too
    leaks = [p for p in files_holding(b"Quillfeather", *scanned, since=started)
             if p.is_relative_to(home) or not p.is_relative_to(other_tests)]
    assert leaks == []


def test_whole_file_forgets_every_passage_of_the_file(pllm: Run, home: Path, tmp_path: Path) -> None:
    notes = write(tmp_path / "in" / "notes.txt", NOTES)
    other = write(tmp_path / "in" / "other.txt", "I sail on Sundays.\n\nMy tea cup is blue.")
    assert pllm("ingest", str(notes), str(other), env=PASS).returncode == 0
    forgot = pllm("profile", "forget", "Quillfeather", "--whole-file", "--yes", "--json", env=PASS)
    assert forgot.returncode == 0, forgot.stderr
    assert json.loads(forgot.stdout)["documents"] == 2
    assert exported(pllm) == ["I sail on Sundays.", "My tea cup is blue."]  # the other file is untouched


def test_a_diary_is_stored_as_its_dated_entries(vault: Vault, tmp_path: Path) -> None:
    diary = write(tmp_path / "diary.md", "# Diary\n\n"
                  "2026-03-04\nSailed Quillfeather to Skjervoy.\n\nCold wind.\n"
                  "March 5, 2026: tea with Ingrid.\n"
                  "## 6 March 2026\nMay 5 people came? No, four.\n"
                  "Sat 7 Mar\n\nBaked bread.\n")
    os.utime(diary, (datetime(2026, 3, 10).timestamp(),) * 2)  # dates the heading, and gives "7 Mar" its year
    records = parse_file(diary)
    assert [(r.content, r.created_at) for r in records] == [
        ("# Diary", datetime(2026, 3, 10).timestamp()),
        ("2026-03-04\nSailed Quillfeather to Skjervoy.\n\nCold wind.", datetime(2026, 3, 4).timestamp()),
        ("March 5, 2026: tea with Ingrid.", datetime(2026, 3, 5).timestamp()),
        ("## 6 March 2026\nMay 5 people came? No, four.", datetime(2026, 3, 6).timestamp()),
        ("Sat 7 Mar\n\nBaked bread.", datetime(2026, 3, 7).timestamp()),
    ]
    vault.add_documents([r.row() for r in records])
    assert vault.forget(query="quillfeather").documents == 1  # one day's entry, not the diary
    assert [d.created_at for d in vault.documents()] == [datetime(2026, 3, d).timestamp() for d in (5, 6, 7, 10)]


def test_reingesting_adds_only_the_passage_that_changed(vault: Vault, tmp_path: Path) -> None:
    notes = write(tmp_path / "notes.txt", NOTES + "\nI sail on Sundays.\n")
    assert vault.add_documents([r.row() for r in parse_file(notes)]) == (3, 0)
    assert vault.add_documents([r.row() for r in parse_file(notes)]) == (0, 3)  # the same file adds nothing
    write(notes, NOTES + "\nI sail on Saturdays.\n")
    assert vault.add_documents([r.row() for r in parse_file(notes)]) == (1, 2)  # the changed paragraph only
    assert vault.forget(query="sail", whole_file=True).documents == 4  # every passage it ever had


def old_vault(path: Path) -> None:
    """A vault at the schema before passages (m009), holding two files ingested as one merged document each, an
    embedding and an entity scan of the first, a synthetic item written from it, and the meta of a real vault."""
    import sqlcipher3

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlcipher3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA key = 's3cret'")
    applied(conn)
    for name, fn in MIGRATIONS[:[n for n, _ in MIGRATIONS].index("m010_passages")]:
        conn.execute("BEGIN")
        fn(conn)
        conn.execute("INSERT INTO _pllm_migrations VALUES (?, 0)", (name,))
        conn.execute("COMMIT")
    conn.execute("INSERT INTO meta VALUES ('name', 'Mara'), ('created_at', '1')")
    for source, kind, text in (("notes.md", "md", NOTES.strip()), ("letter.txt", "txt", "Dear Ingrid,\n\nTulips.")):
        conn.execute("INSERT INTO documents (source, kind, created_at, ingested_at, content, content_hash, tokens)"
                     " VALUES (?, ?, 1.0, 1.0, ?, ?, 9)", (source, kind, text, content_hash(text)))
    conn.execute("INSERT INTO embeddings VALUES (1, 'm#passages160', x'00')")
    conn.execute("""INSERT INTO document_entities VALUES (1, '[["Quillfeather", "PERSON"]]')""")
    conn.execute("INSERT INTO synthetic_items (task, content, content_hash, label, seed_hash, model, created_at)"
                 " VALUES ('notes', 'A yacht, Seaspray.', 'h', NULL, ?, 't', 1.0)", (content_hash(NOTES.strip()),))
    conn.close()


def test_an_older_vault_migrates_and_forgets_by_passage(pllm_home: Path, files_holding: Scan) -> None:
    old_vault(pllm_home / "vault.db")
    vault = open_vault(pllm_home / "vault.db", "s3cret")
    docs = vault.documents()
    assert [(d.id, d.source, d.content) for d in docs] == [
        (1, "notes.md", BOAT), (2, "letter.txt", "Dear Ingrid,"), (3, "notes.md", TEA), (4, "letter.txt", "Tulips.")]
    assert vault.count("embeddings") == 0 and vault.document_entities() == {}  # caches of the merged text
    vault.conn.execute("BEGIN")
    m010_passages(vault.conn)  # safe to re-run: nothing left to split
    vault.conn.execute("COMMIT")
    assert vault.documents() == docs
    store = AdapterStore(vault, pllm_home / "adapters")
    before = store.save(gguf=b"GGUF", peft=b"peft", base_model="m", lora={"r": 8}, stats={},
                        trained_on=[content_hash(NOTES.strip())])  # trained on the merged document
    store.promote(before)
    outcome = forget_everywhere(Settings(), vault, query="Quillfeather", retrain=False)
    assert outcome.vault.documents == 1 and outcome.vault.synthetic == 1  # written from the document that held it
    assert outcome.retired == [before]  # it learned the boat from the merged document
    assert [d.content for d in vault.documents()] == ["Dear Ingrid,", TEA, "Tulips."]
    assert [h.item.text for h in Retriever.from_vault(vault).search("What tea do I drink?")] == [TEA]
    assert TEA in json.dumps(vault.export()) and "Quillfeather" not in json.dumps(vault.export())
    assert vault.forget(query="ingrid", whole_file=True).documents == 2  # the old rows know their file
    assert [d.content for d in vault.documents()] == [TEA]
    vault.close()
    assert files_holding(b"Quillfeather", pllm_home) == []
