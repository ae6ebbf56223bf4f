"""The vault's adapter records and its change counters: SQL that belongs to the vault, kept beside it on the same
connection, so the adapter store (adapters.py) and the adaptation policy (adapt.py) never write SQL of their own.

    records = AdapterRecords(vault)
    records.insert(version, ...), records.live_trained_on(), records.rows()
    new_since(vault, timestamp)   # feedback events, tokens of new text, interactions since a time
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pllm.personal.vault import Vault


@dataclass(frozen=True)
class AdapterVersion:
    """One trained adapter version as the vault records it."""

    version: str
    created_at: float
    status: str
    base_model: str
    lora: dict[str, Any]
    stats: dict[str, Any]
    gguf_sha256: str
    active: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "created_at": self.created_at, "status": self.status, "active": self.active,
                "base_model": self.base_model, "lora": self.lora, **self.stats}


class AdapterRecords:
    """The `adapters` table: one row per trained version, with what it trained on."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def latest_version(self) -> str | None:
        row = self.vault.conn.execute("SELECT version FROM adapters ORDER BY version DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def insert(self, version: str, *, gguf: bytes, base_model: str, lora: dict[str, Any], stats: dict[str, Any],
               trained_on: list[str] | None) -> None:
        """A new candidate, in its own transaction."""
        with self.vault.transaction() as tx:
            tx.execute("INSERT INTO adapters (version, created_at, status, base_model, lora, stats, gguf_sha256,"
                       " trained_on) VALUES (?, ?, 'candidate', ?, ?, ?, ?, ?)",
                       (version, time.time(), base_model, json.dumps(lora), json.dumps(stats),
                        hashlib.sha256(gguf).hexdigest(), None if trained_on is None else json.dumps(trained_on)))

    def live_trained_on(self) -> list[tuple[str, list[str] | None]]:
        """(version, the content hashes it trained on, None where unrecorded) of every version not retired."""
        rows = self.vault.conn.execute("SELECT version, trained_on FROM adapters WHERE status != 'retired'")
        return [(v, None if on is None else json.loads(on)) for v, on in rows]

    def retire(self, tx: Any, versions: Iterable[str]) -> None:
        """Mark versions retired inside the caller's transaction `tx`."""
        tx.executemany("UPDATE adapters SET status = 'retired' WHERE version = ?", [(v,) for v in versions])

    def rows(self, active: str | None = None) -> list[AdapterVersion]:
        """Every version, oldest first; `active` marks the one serving."""
        rows = self.vault.conn.execute("SELECT version, created_at, status, base_model, lora, stats, gguf_sha256"
                                       " FROM adapters ORDER BY version")
        return [AdapterVersion(v, c, s, b, json.loads(lo), json.loads(st), h, v == active)
                for v, c, s, b, lo, st, h in rows]

    def set_status(self, version: str, status: str) -> None:
        self.vault.conn.execute("UPDATE adapters SET status = ? WHERE version = ?", (status, version))


@dataclass(frozen=True)
class NewSince:
    """What arrived in the vault after a time: the signal the adaptation policy weighs."""

    feedback: int
    tokens: int
    interactions: int


def new_since(vault: Vault, since: float) -> NewSince:
    conn = vault.conn
    return NewSince(
        feedback=conn.execute("SELECT count(*) FROM feedback WHERE created_at > ?", (since,)).fetchone()[0],
        tokens=conn.execute("SELECT coalesce(sum(tokens), 0) FROM documents WHERE ingested_at > ?",
                            (since,)).fetchone()[0],
        interactions=conn.execute("SELECT count(*) FROM interactions WHERE created_at > ?", (since,)).fetchone()[0])


def speakers(vault: Vault) -> list[str]:
    """The other people whose words the vault holds (conversation turns by someone other than the user)."""
    return [s for (s,) in vault.conn.execute("SELECT DISTINCT speaker FROM documents WHERE speaker != ''")]
