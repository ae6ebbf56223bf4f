"""The vault: everything pllm knows about its user, in one SQLCipher file, encrypted at rest.

SQLCipher stretches the passphrase (PBKDF2-SHA512, 256,000 rounds) into the page key; every page, the WAL and
temp data are encrypted. `open_vault()` is the one way in: it checks the file, unlocks, then migrates.

    vault = create_vault(settings.paths.vault, "s3cret", name="Mara")
    vault = open_vault(settings.paths.vault, "s3cret")
    vault.add_document(source="notes.md", kind="md", content="My cat is called Pixel.")

A document is one passage of a file (a paragraph, a diary's entry: `ingest.passages` decides), with the file as its
source, so forgetting a name removes the passages that hold it and keeps the rest of the file.

Durability: WAL, synchronous=FULL, each write one transaction: a crash or a full disk (DiskFullError) loses nothing
committed.
Forgetting uses SQLCipher's secure_delete plus VACUUM and a WAL truncate, so forgotten text is gone from the file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pllm.errors import DiskFullError, UsageError, VaultMissingError, WrongPassphraseError
from pllm.files import database_files, remove_files
from pllm.personal.items import (
    FEEDBACK_KINDS,
    Document,
    Egress,
    Fact,
    Feedback,
    ForgetReport,
    Interaction,
    PastFact,
    SyntheticItem,
    accepts,
)
from pllm.personal.migrations import migrate

REKEY_SUFFIX = ".rekey"  # the re-encrypted copy a rekey builds beside the vault before swapping it in


def content_hash(text: str) -> str:
    """Identity of a text for dedupe and for the forgotten list: whitespace-normalised, case kept."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def fact_hash(key: str, value: str) -> str:
    """Identity of a profile fact, as adapters record what they trained on."""
    return content_hash(f"fact\t{key}\t{value}")


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate (~4 bytes a token for English BPE vocabularies); used for budgets."""
    return max(1, (len(text.encode("utf-8")) + 3) // 4)


SQLITE_IOERR, SQLITE_FULL = 10, 13  # sqlite3.h's primary result codes


@functools.cache
def _connection_type() -> type:
    """sqlcipher3's connection, but a full disk raises DiskFullError: every vault statement is an `execute` (or
    `executemany`) on it, so this is the one place SQLite's "database or disk is full" becomes ours. An I/O error
    with under 1 MiB free (SQLite growing its WAL index as it opens the vault) is the full disk too."""
    import sqlcipher3

    class VaultConnection(sqlcipher3.Connection):  # type: ignore[misc]
        @contextlib.contextmanager
        def _disk_full_as_error(self) -> Iterator[None]:
            try:
                yield
            except sqlcipher3.DatabaseError as exc:
                code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
                if code == SQLITE_FULL or (code == SQLITE_IOERR and shutil.disk_usage(self.folder).free < 1 << 20):
                    raise DiskFullError(self.folder) from exc
                raise

        def execute(self, *args: Any) -> Any:
            with self._disk_full_as_error():
                return super().execute(*args)

        def executemany(self, *args: Any) -> Any:
            with self._disk_full_as_error():
                return super().executemany(*args)

    return VaultConnection


def _connect(path: Path, passphrase: str) -> Any:
    import sqlcipher3

    conn = sqlcipher3.connect(str(path), isolation_level=None, check_same_thread=False, factory=_connection_type())
    conn.folder = path.parent  # for DiskFullError's message
    conn.execute("PRAGMA cipher_log_level = NONE")  # a wrong key must be one line from us, not C-level noise
    conn.execute("PRAGMA key = " + sql_string(passphrase))
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException as exc:  # a full disk is DiskFullError (it fails here first), not a wrong passphrase
        conn.close()
        if isinstance(exc, sqlcipher3.DatabaseError):
            raise WrongPassphraseError() from None
        raise
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def create_vault(path: Path, passphrase: str, *, name: str | None = None) -> Vault:
    """Create a new, empty vault; refuses to touch an existing file."""
    if not passphrase:
        raise UsageError("the passphrase is empty")
    if path.exists():
        raise UsageError(f"a vault already exists at {path}")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    vault = Vault(_connect(path, passphrase), path)
    migrate(vault.conn)
    vault.set_meta("created_at", str(time.time()))
    vault.set_meta("name", name or "")
    os.chmod(path, 0o600)
    return vault


def open_vault(path: Path, passphrase: str) -> Vault:
    """Unlock an existing vault and bring its schema up to date."""
    if not path.is_file():
        raise VaultMissingError(f"no vault at {path}: create one with `pllm init`")
    vault = Vault(_connect(path, passphrase), path)
    migrate(vault.conn)
    return vault


class Vault:
    """An unlocked vault. Methods are small, typed reads and writes; each write is one transaction."""

    def __init__(self, conn: Any, path: Path) -> None:
        self.conn = conn
        self.path = path

    # -- plumbing --------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """All or nothing; a full disk's error, which SQLite rolled back itself, is not hidden by "cannot rollback"."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_meta(self, key: str, default: str = "") -> str:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)"
                          " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    @property
    def user_name(self) -> str:
        return self.get_meta("name")

    # -- documents -------------------------------------------------------------------------------------------
    def add_documents(self, docs: list[tuple[Any, ...]]) -> tuple[int, int]:
        """Add (source, kind, content, created_at[, speaker]) records in one transaction; returns (added,
        duplicates). The speaker is '' (the default) for the user's own texts."""
        added = 0
        now = time.time()
        with self.transaction() as tx:
            for source, kind, content, created_at, *speaker in docs:
                cur = tx.execute(
                    "INSERT OR IGNORE INTO documents (source, kind, created_at, ingested_at, content, content_hash,"
                    " tokens, speaker) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (source, kind, created_at, now, content, content_hash(content), approx_tokens(content),
                     speaker[0] if speaker else ""),
                )
                added += cur.rowcount
        return added, len(docs) - added

    def add_document(self, *, source: str, kind: str, content: str, created_at: float | None = None) -> bool:
        added, _ = self.add_documents([(source, kind, content, created_at if created_at is not None else time.time())])
        return added == 1

    def documents(self) -> list[Document]:
        rows = self.conn.execute("SELECT id, source, kind, created_at, content, content_hash, tokens, speaker"
                                 " FROM documents ORDER BY created_at, id")
        return [Document(*row) for row in rows]

    def count(self, table: str) -> int:
        if table not in ("documents", "interactions", "feedback", "profile_facts", "egress_log", "forgotten",
                         "embeddings", "synthetic_items"):
            raise ValueError(f"unknown table {table}")
        return int(self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    # -- interactions and feedback ---------------------------------------------------------------------------
    def log_interaction(self, *, prompt: str, answer: str, latency_s: float, tokens: int, personal: bool,
                        client: str, sentiment: float, adapter_version: str | None = None,
                        created_at: float | None = None, modality: str = "text") -> int:
        created = created_at if created_at is not None else time.time()
        with self.transaction() as tx:
            cur = tx.execute(
                "INSERT INTO interactions (created_at, prompt, answer, adapter_version, latency_s, tokens, personal,"
                " client, hour, sentiment, modality) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (created, prompt, answer, adapter_version, latency_s, tokens, int(personal), client,
                 time.localtime(created).tm_hour, sentiment, modality),
            )
            return int(cur.lastrowid)

    def log_route(self, interaction_id: int, destination: str, reason: str, scores: dict[str, float]) -> None:
        with self.transaction() as tx:
            tx.execute("INSERT OR REPLACE INTO routes (interaction_id, destination, reason, scores)"
                       " VALUES (?, ?, ?, ?)",
                       (interaction_id, destination, reason, json.dumps({k: round(v, 4) for k, v in scores.items()})))

    def routes(self) -> list[tuple[int, str, str]]:
        """(interaction id, destination, reason) of every routed answer, oldest first."""
        rows = self.conn.execute("SELECT interaction_id, destination, reason FROM routes ORDER BY interaction_id")
        return [(int(i), str(d), str(r)) for i, d, r in rows]

    def add_receipt(self, service: str, entry: dict[str, Any]) -> None:
        with self.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO receipts (received_at, service, seq, amount, receipt) "
                       "VALUES (?, ?, ?, ?, ?)", (time.time(), service, int(entry["seq"]), float(entry["amount"]),
                                                  json.dumps(entry, sort_keys=True)))

    def receipts(self) -> list[dict[str, Any]]:
        """The cloud's signed ledger entries this device received, in the ledger's order."""
        rows = self.conn.execute("SELECT service, receipt FROM receipts ORDER BY service, seq")
        return [{"service": service, **json.loads(receipt)} for service, receipt in rows]

    def interactions(self, limit: int | None = None) -> list[Interaction]:
        sql = ("SELECT id, created_at, prompt, answer, adapter_version, latency_s, tokens, personal, client, hour,"
               " sentiment, modality FROM interactions ORDER BY created_at DESC, id DESC")
        rows = self.conn.execute(sql + (f" LIMIT {int(limit)}" if limit else ""))
        return [Interaction(*row[:7], bool(row[7]), *row[8:]) for row in rows][::-1]  # type: ignore[call-arg]

    def interaction_answered(self, answer: str) -> int | None:
        """The newest logged interaction whose answer was `answer` (an app sends the conversation back as shown)."""
        row = self.conn.execute("SELECT id FROM interactions WHERE trim(answer) = ? ORDER BY id DESC LIMIT 1",
                                (answer.strip(),)).fetchone()
        return int(row[0]) if row else None

    def add_feedback(self, interaction_id: int, kind: str, value: str | None = None) -> int:
        if kind not in FEEDBACK_KINDS:
            raise UsageError(f"unknown feedback kind {kind!r}; use one of {', '.join(FEEDBACK_KINDS)}")
        if kind == "rating" and (value is None or not re.fullmatch(r"[1-5]", value.strip())):
            raise UsageError("a rating is a whole number from 1 to 5")
        if kind == "edit" and not (value and value.strip()):
            raise UsageError("an edit needs the corrected answer")
        if self.conn.execute("SELECT 1 FROM interactions WHERE id = ?", (interaction_id,)).fetchone() is None:
            raise UsageError(f"no interaction {interaction_id}")
        with self.transaction() as tx:
            cur = tx.execute("INSERT INTO feedback (interaction_id, kind, value, created_at) VALUES (?, ?, ?, ?)",
                             (interaction_id, kind, value, time.time()))
            return int(cur.lastrowid)

    def feedback(self) -> list[Feedback]:
        rows = self.conn.execute("SELECT id, interaction_id, kind, value, created_at FROM feedback ORDER BY id")
        return [Feedback(*row) for row in rows]

    def accepted_answers(self) -> list[tuple[Interaction, str]]:
        """Interactions whose answer the user accepted or edited (and did not reject later), with the answer as the
        user left it (the latest edit, else the model's own answer), oldest first."""
        final: dict[int, str | None] = {}
        for f in self.feedback():
            if f.kind == "edit" and f.value:
                final[f.interaction_id] = f.value
            elif accepts(f) and final.get(f.interaction_id) is None:
                final[f.interaction_id] = None
            elif f.kind == "down" or (f.kind == "rating" and not accepts(f)):  # the user's latest word counts
                final.pop(f.interaction_id, None)
        return [(i, final[i.id] or i.answer) for i in self.interactions() if i.id in final]

    # -- profile facts ---------------------------------------------------------------------------------------
    def upsert_fact(self, key: str, value: str, *, source: str, confidence: float, subject: str = "",
                    stated_at: float | None = None) -> None:
        """Keep one value per (subject, key): the most recently stated, unless it is much less certain. A replaced
        value goes to the fact's history; a statement older than the current value goes there directly."""
        stated = time.time() if stated_at is None else stated_at
        with self.transaction() as tx:
            row = tx.execute("SELECT value, source, confidence, updated_at FROM profile_facts WHERE subject = ? AND "
                             "key = ?", (subject, key)).fetchone()
            if row is not None:
                old_value, old_source, old_confidence, old_stated = row
                if old_value.lower() == value.lower():
                    if stated >= old_stated:
                        tx.execute("UPDATE profile_facts SET source = ?, confidence = max(confidence, ?), "
                                   "updated_at = ? WHERE subject = ? AND key = ?",
                                   (source, confidence, stated, subject, key))
                    return
                if confidence < old_confidence - 0.3:
                    return
                if stated < old_stated:  # already superseded when it arrives (files ingested out of order)
                    tx.execute("INSERT INTO fact_history (subject, key, value, source, stated_at, replaced_at) "
                               "VALUES (?, ?, ?, ?, ?, ?)", (subject, key, value, source, stated, old_stated))
                    return
                tx.execute("INSERT INTO fact_history (subject, key, value, source, stated_at, replaced_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (subject, key, old_value, old_source, old_stated, stated))
            tx.execute(
                "INSERT INTO profile_facts (subject, key, value, source, confidence, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(subject, key) DO UPDATE SET value = excluded.value, "
                "source = excluded.source, confidence = excluded.confidence, updated_at = excluded.updated_at",
                (subject, key, value, source, confidence, stated),
            )

    def facts(self) -> list[Fact]:
        """Every current fact: the user's (subject '') and those others stated about themselves."""
        rows = self.conn.execute("SELECT key, value, source, confidence, updated_at, subject FROM profile_facts "
                                 "ORDER BY subject, key")
        return [Fact(*row) for row in rows]

    def fact_history(self) -> list[PastFact]:
        rows = self.conn.execute("SELECT subject, key, value, source, stated_at, replaced_at FROM fact_history "
                                 "ORDER BY subject, key, stated_at")
        return [PastFact(*row) for row in rows]

    # -- egress log (the privacy gate writes it) -------------------------------------------------------------
    def log_egress(self, *, destination: str, purpose: str, redacted_text: str, placeholders: int,
                   entities: dict[str, int] | None = None, consent: str = "redacted") -> None:
        with self.transaction() as tx:
            tx.execute("INSERT INTO egress_log (created_at, destination, purpose, redacted_text, placeholders, bytes,"
                       " entities, consent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (time.time(), destination, purpose, redacted_text, placeholders,
                        len(redacted_text.encode("utf-8")), json.dumps(entities or {}, sort_keys=True), consent))

    def egress(self) -> list[Egress]:
        rows = self.conn.execute("SELECT id, created_at, destination, purpose, consent, redacted_text, placeholders,"
                                 " bytes, entities FROM egress_log ORDER BY id")
        return [Egress(id_, at, destination, purpose, consent, text, placeholders, size,
                       entities=json.loads(entities or "{}"))
                for id_, at, destination, purpose, consent, text, placeholders, size, entities in rows]

    def document_entities(self) -> dict[int, list[tuple[str, str]]]:
        """Personal entities (text, type) the gate found in each document it has scanned."""
        rows = self.conn.execute("SELECT document_id, entities FROM document_entities")
        return {int(doc_id): [(str(t), str(k)) for t, k in json.loads(found)] for doc_id, found in rows}

    def put_document_entities(self, found: dict[int, list[tuple[str, str]]]) -> None:
        with self.transaction() as tx:
            tx.executemany("INSERT OR REPLACE INTO document_entities (document_id, entities) VALUES (?, ?)",
                           [(doc_id, json.dumps(items)) for doc_id, items in found.items()])

    # -- synthetic items (CDCDA) -------------------------------------------------------------------------------
    def add_synthetic(self, items: list[tuple[str, str, str | None, str, str]]) -> int:
        """Store (task, content, label, seed_hash, model) items in one transaction; returns how many were new."""
        now = time.time()
        with self.transaction() as tx:
            before = tx.execute("SELECT count(*) FROM synthetic_items").fetchone()[0]
            tx.executemany("INSERT OR IGNORE INTO synthetic_items (task, content, content_hash, label, seed_hash, "
                           "model, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(task, content, content_hash(content), label, seed, model, now)
                            for task, content, label, seed, model in items])
            return int(tx.execute("SELECT count(*) FROM synthetic_items").fetchone()[0] - before)

    def synthetic_items(self) -> list[SyntheticItem]:
        rows = self.conn.execute("SELECT id, task, content, content_hash, label, seed_hash, model, created_at "
                                 "FROM synthetic_items ORDER BY id")
        return [SyntheticItem(*row) for row in rows]

    # -- embeddings ------------------------------------------------------------------------------------------
    def embeddings(self, model: str) -> dict[int, bytes]:
        rows = self.conn.execute("SELECT document_id, vector FROM embeddings WHERE model = ?", (model,))
        return {int(doc_id): bytes(vector) for doc_id, vector in rows}

    def put_embeddings(self, model: str, vectors: dict[int, bytes]) -> None:
        with self.transaction() as tx:
            tx.executemany("INSERT OR REPLACE INTO embeddings (document_id, model, vector) VALUES (?, ?, ?)",
                           [(doc_id, model, vec) for doc_id, vec in vectors.items()])

    # -- export, forget, rekey -------------------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        """Everything the vault holds about the user, as plain JSON-ready data."""
        return {
            "format": "pllm-vault-export/1",
            "exported_at": time.time(),
            "user": {"name": self.user_name, "created_at": float(self.get_meta("created_at", "0") or 0)},
            "documents": [asdict(d) for d in self.documents()],
            "interactions": [asdict(i) for i in self.interactions()],
            "feedback": [asdict(f) for f in self.feedback()],
            "facts": [asdict(f) for f in self.facts()],
            "fact_history": [asdict(f) for f in self.fact_history()],
            "egress": [asdict(e) for e in self.egress()],
            "routes": [{"interaction_id": i, "destination": d, "reason": r} for i, d, r in self.routes()],
            "receipts": self.receipts(),
            # Written by the T-tier from the user's items (pllm augment), kept apart: not the user's own words.
            "synthetic": [asdict(s) for s in self.synthetic_items()],
            "forgotten": self.conn.execute("SELECT count(*) FROM forgotten").fetchone()[0],
        }

    def forgotten_hashes(self) -> set[str]:
        return {row[0] for row in self.conn.execute("SELECT content_hash FROM forgotten")}

    def forget(self, *, query: str | None = None, like: bool = False, since: float | None = None,
               until: float | None = None, everything: bool = False, whole_file: bool = False,
               reason: str = "user request") -> ForgetReport:
        """Delete what matches (all of it, a case-insensitive text query, and/or a time range), then scrub the file.

        The query is literal text ("_" and "%" are characters) unless `like` makes it an SQL LIKE pattern. Documents
        go passage by passage: only those that match, unless `whole_file` takes every passage of each file (source)
        one came from. A passage split from an older, larger document (migration m010) reports that document's hash
        too: adapters, an interrupted run and synthetic items recorded that hash, and it held the text.
        """
        if not everything and query is None and since is None and until is None:
            raise UsageError("say what to forget: --all, a query, --since or --until")
        where, args = ["1"], []
        if query is not None and not query.strip():
            raise UsageError("the query to forget is empty")
        if since is not None:
            where.append("created_at >= ?")
            args.append(since)
        if until is not None:
            where.append("created_at < ?")
            args.append(until)
        clause = " AND ".join(where)
        text = query.lower() if query else None

        def matches(*columns: str) -> str:  # literal: instr() finds the text itself, wildcards included
            test = "lower({}) LIKE ?" if like else "instr(lower({}), ?) > 0"
            return " AND (" + " OR ".join(test.format(c) for c in columns) + ")" if text is not None else ""

        def params(n: int) -> tuple[Any, ...]:
            return (*args, *([text] * n if text is not None else []))

        now = time.time()
        with self.transaction() as tx:
            docs = tx.execute(f"SELECT id, content_hash, origin_hash, source FROM documents WHERE {clause}"
                              f"{matches('content')}", params(1)).fetchall()
            if whole_file and docs:
                files = sorted({source for *_, source in docs})
                docs = tx.execute("SELECT id, content_hash, origin_hash, source FROM documents WHERE source IN "
                                  f"({', '.join('?' * len(files))})", files).fetchall()
            doc_hashes = list(dict.fromkeys(h for _, own, origin, _ in docs for h in (own, origin) if h))
            inters = tx.execute(f"SELECT id, prompt, answer FROM interactions WHERE {clause}"
                                f"{matches('prompt', 'answer')}", params(2)).fetchall()
            facts = tx.execute(f"SELECT id, key, value FROM profile_facts WHERE "
                               f"{clause.replace('created_at', 'updated_at')}{matches('key', 'value')}",
                               params(2)).fetchall()
            past = tx.execute(f"SELECT id, key, value FROM fact_history WHERE "
                              f"{clause.replace('created_at', 'stated_at')}{matches('key', 'value')}",
                              params(2)).fetchall()
            # What the T-tier wrote from a forgotten document goes with it, and so does any that matches itself.
            synthetic = tx.execute(
                f"SELECT id, content_hash FROM synthetic_items WHERE ({clause}{matches('content')})"
                f" OR seed_hash IN ({', '.join('?' * len(doc_hashes))})", (*params(1), *doc_hashes)).fetchall()
            forgotten = ([(h, "document") for h in doc_hashes] + [(h, "synthetic") for _, h in synthetic]
                         + [(content_hash(t), "interaction") for _, p, a in inters for t in (p, a)]
                         + [(fact_hash(k, v), "fact") for _, k, v in facts + past])
            tx.executemany("INSERT INTO forgotten (content_hash, kind, forgotten_at, reason) VALUES (?, ?, ?, ?)",
                           [(h, kind, now, reason) for h, kind in forgotten])
            tx.executemany("DELETE FROM documents WHERE id = ?", [(i,) for i, *_ in docs])
            tx.executemany("DELETE FROM synthetic_items WHERE id = ?", [(i,) for i, _ in synthetic])
            tx.executemany("DELETE FROM interactions WHERE id = ?", [(i,) for i, _, _ in inters])
            tx.executemany("DELETE FROM profile_facts WHERE id = ?", [(i,) for i, _, _ in facts])
            tx.executemany("DELETE FROM fact_history WHERE id = ?", [(i,) for i, _, _ in past])
            if everything:
                tx.execute("DELETE FROM egress_log")
        self.scrub()
        return ForgetReport(len(docs), len(inters), len(facts) + len(past), frozenset(h for h, _ in forgotten),
                            synthetic=len(synthetic))

    def scrub(self) -> None:
        """Rewrite the file so deleted pages and free-list leftovers are gone, then empty the WAL."""
        self.conn.execute("VACUUM")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def rekey(self, new_passphrase: str) -> None:
        """Re-encrypt the vault under a new passphrase (a full copy, swapped in atomically)."""
        if not new_passphrase:
            raise UsageError("the new passphrase is empty")
        tmp = self.path.with_name(self.path.name + REKEY_SUFFIX)
        remove_files(database_files(tmp))
        self.conn.execute(f"ATTACH DATABASE {sql_string(str(tmp))} AS rekeyed KEY {sql_string(new_passphrase)}")
        self.conn.execute("SELECT sqlcipher_export('rekeyed')")
        self.conn.execute("DETACH DATABASE rekeyed")
        os.chmod(tmp, 0o600)
        self.close()
        os.replace(tmp, self.path)
        remove_files(database_files(self.path)[1:])
        self.conn = _connect(self.path, new_passphrase)


def dumps_export(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)
