"""The vault's schema as an ordered list of migrations (after simonw/llm's migrations.py).

Each migration is a small function registered in order by `@migration`; the names applied are kept in
`_pllm_migrations`; each is safe to re-run (CREATE ... IF NOT EXISTS). Add a migration by appending a function
with the next number; never edit or renumber one that has shipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Connection = Any  # a sqlcipher3 connection (DB-API 2.0)
Migration = Callable[[Connection], None]

MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    name = fn.__name__
    if any(existing == name for existing, _ in MIGRATIONS):
        raise ValueError(f"migration {name} is registered twice")
    number = int(name[1:4])
    if MIGRATIONS and number <= int(MIGRATIONS[-1][0][1:4]):
        raise ValueError(f"migration {name} is out of order")
    MIGRATIONS.append((name, fn))
    return fn


def applied(conn: Connection) -> list[str]:
    conn.execute("CREATE TABLE IF NOT EXISTS _pllm_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    return [row[0] for row in conn.execute("SELECT name FROM _pllm_migrations ORDER BY name")]


def migrate(conn: Connection) -> list[str]:
    """Apply every migration not applied yet, each in its own transaction; returns the names applied now."""
    done = set(applied(conn))
    ran = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            fn(conn)
            conn.execute("INSERT INTO _pllm_migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite rolls back itself on a full disk: do not hide its error
                conn.execute("ROLLBACK")
            raise
        ran.append(name)
    return ran


@migration
def m001_initial(conn: Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        """CREATE TABLE IF NOT EXISTS documents (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,          -- file path or 'chat', 'api'
            kind TEXT NOT NULL,            -- txt, md, jsonl, lamp, note
            created_at REAL NOT NULL,      -- when the user wrote it (file mtime or the record's timestamp)
            ingested_at REAL NOT NULL,
            content TEXT NOT NULL,
            content_hash TEXT NOT NULL UNIQUE,
            tokens INTEGER NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS interactions (
            id INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            prompt TEXT NOT NULL,
            answer TEXT NOT NULL,
            adapter_version TEXT,
            latency_s REAL NOT NULL,
            tokens INTEGER NOT NULL,
            personal INTEGER NOT NULL,     -- 1 when the answer used the profile and retrieved items
            client TEXT NOT NULL,          -- cli, chat, api
            hour INTEGER NOT NULL,         -- local hour of day, 0-23
            sentiment REAL NOT NULL        -- of the user's message, -1..1
        )"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS feedback (
            id INTEGER PRIMARY KEY,
            interaction_id INTEGER NOT NULL REFERENCES interactions(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('up', 'down', 'edit', 'regenerate', 'rating')),
            value TEXT,                    -- the edited answer, or the rating
            created_at REAL NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS profile_facts (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            value TEXT NOT NULL,
            source TEXT NOT NULL,          -- document:<id>, interaction:<id>, user
            confidence REAL NOT NULL,
            updated_at REAL NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS egress_log (
            id INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            destination TEXT NOT NULL,
            purpose TEXT NOT NULL,
            redacted_text TEXT NOT NULL,
            placeholders INTEGER NOT NULL,
            bytes INTEGER NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS forgotten (
            id INTEGER PRIMARY KEY,
            content_hash TEXT NOT NULL,    -- so no later adapter trains on it again
            kind TEXT NOT NULL,            -- document, interaction, fact
            forgotten_at REAL NOT NULL,
            reason TEXT NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX IF NOT EXISTS forgotten_hash ON forgotten(content_hash)")
    conn.execute("CREATE INDEX IF NOT EXISTS interactions_time ON interactions(created_at)")
    conn.execute("CREATE INDEX IF NOT EXISTS documents_time ON documents(created_at)")
    conn.execute("CREATE INDEX IF NOT EXISTS feedback_interaction ON feedback(interaction_id)")


@migration
def m002_embeddings(conn: Connection) -> None:
    # Vectors live inside the encrypted vault: no plaintext index on disk.
    conn.execute(
        """CREATE TABLE IF NOT EXISTS embeddings (
            document_id INTEGER PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            vector BLOB NOT NULL
        )"""
    )


@migration
def m003_adapters(conn: Connection) -> None:
    # Versions of the user's LoRA adapter. The files are encrypted on disk; what they are, what trained them and how
    # they scored lives here, inside the vault. The promoted versions form a stack in meta['adapter_stack'].
    conn.execute(
        """CREATE TABLE IF NOT EXISTS adapters (
            version TEXT PRIMARY KEY,      -- v0001, v0002, ...
            created_at REAL NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('candidate', 'promoted', 'rejected')),
            base_model TEXT NOT NULL,
            lora TEXT NOT NULL,            -- JSON: r, alpha, target modules
            stats TEXT NOT NULL,           -- JSON: data counts, steps, loss, seconds, eval scores
            gguf_sha256 TEXT NOT NULL      -- of the plaintext GGUF, checked after decryption
        )"""
    )


@migration
def m004_adapter_provenance(conn: Connection) -> None:
    # Each version records the content hashes of the vault items it trained on (NULL: trained before this record
    # existed, so forgetting anything retires it), and may be 'retired': a forgotten item was in its data, its
    # files are deleted. SQLite cannot alter a CHECK constraint, so the table is rebuilt.
    columns = {row[1] for row in conn.execute("PRAGMA table_info(adapters)")}
    if "trained_on" in columns:
        return
    conn.execute(
        """CREATE TABLE adapters_new (
            version TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('candidate', 'promoted', 'rejected', 'retired')),
            base_model TEXT NOT NULL,
            lora TEXT NOT NULL,
            stats TEXT NOT NULL,
            gguf_sha256 TEXT NOT NULL,
            trained_on TEXT                -- JSON list of content hashes of the vault items in its training data
        )"""
    )
    conn.execute("INSERT INTO adapters_new (version, created_at, status, base_model, lora, stats, gguf_sha256) "
                 "SELECT version, created_at, status, base_model, lora, stats, gguf_sha256 FROM adapters")
    conn.execute("DROP TABLE adapters")
    conn.execute("ALTER TABLE adapters_new RENAME TO adapters")


@migration
def m005_speakers_and_fact_history(conn: Connection) -> None:
    # A fact belongs to a subject ('' is the user; otherwise the person who said it in an imported conversation),
    # and `updated_at` is when it was stated. A changed fact keeps its newest value here and its earlier values in
    # fact_history. SQLite cannot alter a UNIQUE constraint, so profile_facts is rebuilt.
    columns = {row[1] for row in conn.execute("PRAGMA table_info(profile_facts)")}
    if "subject" not in columns:
        conn.execute(
            """CREATE TABLE profile_facts_new (
                id INTEGER PRIMARY KEY,
                subject TEXT NOT NULL DEFAULT '',  -- '' the user; else the speaker's name
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                source TEXT NOT NULL,
                confidence REAL NOT NULL,
                updated_at REAL NOT NULL,      -- when the fact was stated
                UNIQUE (subject, key)
            )"""
        )
        conn.execute("INSERT INTO profile_facts_new (id, key, value, source, confidence, updated_at) "
                     "SELECT id, key, value, source, confidence, updated_at FROM profile_facts")
        conn.execute("DROP TABLE profile_facts")
        conn.execute("ALTER TABLE profile_facts_new RENAME TO profile_facts")
    if "speaker" not in {row[1] for row in conn.execute("PRAGMA table_info(documents)")}:
        # Who wrote a document: '' the user; else the other person's name in an imported conversation.
        conn.execute("ALTER TABLE documents ADD COLUMN speaker TEXT NOT NULL DEFAULT ''")
    conn.execute(
        """CREATE TABLE IF NOT EXISTS fact_history (
            id INTEGER PRIMARY KEY,
            subject TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            source TEXT NOT NULL,
            stated_at REAL NOT NULL,
            replaced_at REAL NOT NULL      -- when a newer value took its place
        )"""
    )


@migration
def m006_privacy_gate(conn: Connection) -> None:
    # The privacy gate records, for every request that left the device, the consent it went under and how many
    # entities of each type it replaced (JSON: {"PERSON": 2, "EMAIL_ADDRESS": 1}); and it keeps the names, places
    # and organisations found in each document, so a name is redacted everywhere once it was found anywhere.
    conn.execute(
        """CREATE TABLE IF NOT EXISTS document_entities (
            document_id INTEGER PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,  -- one row a scan
            entities TEXT NOT NULL             -- JSON [[text, type], ...]
        )"""
    )
    columns = {row[1] for row in conn.execute("PRAGMA table_info(egress_log)")}
    if "entities" not in columns:
        conn.execute("ALTER TABLE egress_log ADD COLUMN entities TEXT NOT NULL DEFAULT '{}'")
    if "consent" not in columns:
        conn.execute("ALTER TABLE egress_log ADD COLUMN consent TEXT NOT NULL DEFAULT 'redacted'")


@migration
def m007_synthetic_items(conn: Connection) -> None:
    # CDCDA's synthetic items: written by the T-tier from the user's seed items, kept apart from the user's own
    # words (retrieval, the profile and the export's documents never see them), trained on at a ratio, and
    # forgotten with their seed or by their own text.
    conn.execute(
        """CREATE TABLE IF NOT EXISTS synthetic_items (
            id INTEGER PRIMARY KEY,
            task TEXT NOT NULL,                -- what the items are (pllm augment --task)
            content TEXT NOT NULL,
            content_hash TEXT NOT NULL UNIQUE,
            label TEXT,                        -- the seed's label, for label tasks
            seed_hash TEXT NOT NULL,           -- content_hash of the document it was written from
            model TEXT NOT NULL,               -- the T-model that wrote it
            created_at REAL NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX IF NOT EXISTS synthetic_items_seed ON synthetic_items (seed_hash)")


@migration
def m008_routes(conn: Connection) -> None:
    # The router's decision for each answered question: where it went and why (the question itself stays in
    # `interactions`, so forgetting the interaction forgets its route).
    conn.execute(
        """CREATE TABLE IF NOT EXISTS routes (
            interaction_id INTEGER PRIMARY KEY REFERENCES interactions(id) ON DELETE CASCADE,
            destination TEXT NOT NULL,         -- local, cloud, or expert:NAME
            reason TEXT NOT NULL,              -- the rule that decided, with its figures
            scores TEXT NOT NULL DEFAULT '{}'  -- JSON: similarity per expert, personal closeness, confidence
        )"""
    )


@migration
def m009_receipts(conn: Connection) -> None:
    # The cloud's signed receipts for what this device was charged or credited (its ledger entries, as the cloud
    # signed them): the device's proof of what it paid. The request digest in each is the one the device signed.
    conn.execute(
        """CREATE TABLE IF NOT EXISTS receipts (
            id INTEGER PRIMARY KEY,
            received_at REAL NOT NULL,
            service TEXT NOT NULL,             -- the cloud's URL
            seq INTEGER NOT NULL,              -- the entry's number in the cloud's ledger
            amount REAL NOT NULL,              -- credits gained (negative: paid)
            receipt TEXT NOT NULL,             -- the signed entry, JSON
            UNIQUE (service, seq)
        )"""
    )


@migration
def m010_passages(conn: Connection) -> None:
    # Documents are stored as passages (paragraphs, a diary's dated entries), so forgetting one name leaves the rest
    # of its file. A .txt/.md document from before held paragraphs merged up to the chunk size: it is split here by
    # ingest's own rule (`passages`). Its first passage keeps its id; its embeddings and entity scan are caches of
    # the old text and go (both are rebuilt when next needed). Adapters, an interrupted run and synthetic items
    # recorded the old document's content hash, so each passage keeps it as `origin_hash`: forgetting any passage
    # of it reaches them. Re-running finds nothing to split: a passage is its own only passage.
    from pllm.personal.ingest import passages  # here: ingest imports the vault, which imports this module
    from pllm.personal.vault import approx_tokens, content_hash

    if "origin_hash" not in {row[1] for row in conn.execute("PRAGMA table_info(documents)")}:
        conn.execute("ALTER TABLE documents ADD COLUMN origin_hash TEXT")  # NULL: a passage since its ingest
    conn.execute("CREATE INDEX IF NOT EXISTS documents_source ON documents(source)")  # forget --whole-file
    rows = conn.execute("SELECT id, source, kind, created_at, ingested_at, content, content_hash, speaker, origin_hash"
                        " FROM documents WHERE kind IN ('txt', 'md') ORDER BY id").fetchall()
    for doc_id, source, kind, created_at, ingested_at, content, old_hash, speaker, origin in rows:
        parts = passages(content, markdown=kind == "md", dated=created_at)
        if len(parts) < 2:
            continue
        conn.execute("DELETE FROM embeddings WHERE document_id = ?", (doc_id,))
        conn.execute("DELETE FROM document_entities WHERE document_id = ?", (doc_id,))
        conn.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
        for n, (text, when) in enumerate(parts):
            conn.execute("INSERT OR IGNORE INTO documents (id, source, kind, created_at, ingested_at, content,"
                         " content_hash, tokens, speaker, origin_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (doc_id if n == 0 else None, source, kind, when, ingested_at, text, content_hash(text),
                          approx_tokens(text), speaker, origin or old_hash))


@migration
def m011_modality(conn: Connection) -> None:
    # How each request came in: 'text' (typed) or 'voice' (spoken and transcribed on the device; the audio is never
    # kept). The profile reads how often, and when, the user speaks rather than types.
    if "modality" not in {row[1] for row in conn.execute("PRAGMA table_info(interactions)")}:
        conn.execute("ALTER TABLE interactions ADD COLUMN modality TEXT NOT NULL DEFAULT 'text'")
