"""PLMM's economic model: every T-model and expert call is metered and paid for, contributions are credited, and
neither side can forge or deny an entry.

    ledger = Ledger.in_folder(settings.paths.cloud)          # ledger.db and ledger.key in the cloud's state
    receipt = ledger.charge("maras-laptop", provider="expert:cooking", tokens_in=40, tokens_out=60,
                            request_digest=digest, device_signature=signature)
    ledger.balances()        # {"devices": {...}, "providers": {...}}
    ledger.verify()          # Verification(ok=True, entries=..., problem="")

Entries are append-only and hash-chained: each entry's hash covers the previous hash and its own fields, and the
service signs that hash with its Ed25519 key, so an edited, removed or inserted entry breaks the chain and an entry
the service did not make has no valid signature. A device signs each request it sends (Ed25519, its own key; the
service keeps the public half, given at `pllm cloud keys add --public-key`), and the entry keeps that signature
with the digest it covers: the service can show the device asked. The device keeps each receipt the service
returns (the `X-Pllm-Receipt` header): it can show what it was charged. Prices are settings, in credits.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pllm.signing import encode_receipt, entry_hash, public_key_b64, sign, verify_signature

GENESIS = "0" * 64
KINDS = ("charge", "credit", "grant")


@dataclass(frozen=True)
class Entry:
    seq: int
    at: float
    kind: str  # charge (a device pays a provider), credit (a device earns), grant (an opening balance)
    device: str
    provider: str  # t-model, expert:NAME, or what a credit was for
    tokens_in: int
    tokens_out: int
    amount: float  # credits the device gains (negative for a charge)
    memo: str
    request_digest: str
    device_signature: str
    prev: str
    hash: str = ""
    service_signature: str = ""

    def computed_hash(self) -> str:
        return entry_hash(asdict(self))

    def receipt(self) -> str:
        """The entry, signed, as one header value (base64 JSON) the device keeps."""
        return encode_receipt(asdict(self))


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    problem: str = ""


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The service's signing key, created on first use (mode 0600)."""
    if path.is_file():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 key")
        return key
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return key


class Ledger:
    def __init__(self, path: Path, key_path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.key = load_or_create_key(key_path)
        self.public_key = public_key_b64(self.key)
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.lock = threading.RLock()
        columns = ", ".join(f"{name} {kind}" for name, kind in (
            ("seq", "INTEGER PRIMARY KEY"), ("at", "REAL NOT NULL"), ("kind", "TEXT NOT NULL"),
            ("device", "TEXT NOT NULL"), ("provider", "TEXT NOT NULL"), ("tokens_in", "INTEGER NOT NULL"),
            ("tokens_out", "INTEGER NOT NULL"), ("amount", "REAL NOT NULL"), ("memo", "TEXT NOT NULL"),
            ("request_digest", "TEXT NOT NULL"), ("device_signature", "TEXT NOT NULL"), ("prev", "TEXT NOT NULL"),
            ("hash", "TEXT NOT NULL"), ("service_signature", "TEXT NOT NULL")))
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS entries ({columns})")
        # Append-only, as far as SQLite can say so: updates and deletes are refused (verify() catches the rest).
        self.conn.execute("CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries "
                          "BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END")
        self.conn.execute("CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries "
                          "BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END")

    def append(self, kind: str, device: str, provider: str, *, amount: float, tokens_in: int = 0,
               tokens_out: int = 0, memo: str = "", request_digest: str = "", device_signature: str = "") -> Entry:
        if kind not in KINDS:
            raise ValueError(f"unknown ledger entry kind {kind!r}")
        with self.lock:
            row = self.conn.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
            entry = Entry(seq, time.time(), kind, device, provider, int(tokens_in), int(tokens_out),
                          float(round(amount, 6)), memo,
                          request_digest, device_signature, prev)
            digest = entry.computed_hash()
            entry = Entry(**{**asdict(entry), "hash": digest, "service_signature": sign(self.key, digest)})
            self.conn.execute(f"INSERT INTO entries VALUES ({', '.join('?' * 14)})", tuple(asdict(entry).values()))
        return entry

    def grant_once(self, device: str, amount: float) -> None:
        """A device's opening balance, the first time it is seen (once, however many requests arrive together)."""
        with self.lock:
            if not self.conn.execute("SELECT 1 FROM entries WHERE device = ? LIMIT 1", (device,)).fetchone():
                self.append("grant", device, "opening grant", amount=amount)

    @classmethod
    def in_folder(cls, folder: Path) -> Ledger:
        return cls(folder / "ledger.db", folder / "ledger.key")

    def entries(self, device: str | None = None, limit: int | None = None) -> list[Entry]:
        """Oldest first; with `limit`, the latest `limit` entries."""
        sql = "SELECT * FROM entries" + (" WHERE device = ?" if device else "") + " ORDER BY seq DESC"
        args: tuple[object, ...] = (device,) if device else ()
        if limit:
            sql, args = sql + " LIMIT ?", (*args, limit)
        with self.lock:
            rows = self.conn.execute(sql, args).fetchall()
        return [Entry(*row) for row in reversed(rows)]

    def balance(self, device: str) -> float:
        row = self.conn.execute("SELECT COALESCE(SUM(amount), 0) FROM entries WHERE device = ?", (device,)).fetchone()
        return float(row[0])

    def balances(self) -> dict[str, dict[str, float]]:
        """Per device (what it holds) and per provider (what calls to it earned)."""
        devices = dict(self.conn.execute("SELECT device, ROUND(SUM(amount), 6) FROM entries GROUP BY device"))
        providers = dict(self.conn.execute("SELECT provider, ROUND(-SUM(amount), 6) FROM entries "
                                           "WHERE kind = 'charge' GROUP BY provider"))
        return {"devices": devices, "providers": providers}

    def verify(self, device_keys: dict[str, str] | None = None) -> Verification:
        """Walk the chain: each entry's hash, its link to the one before, the service's signature, and (for
        devices with a registered public key) the device's signature over the request digest."""
        prev = GENESIS
        entries = self.entries()
        for n, entry in enumerate(entries, 1):
            if entry.seq != n:
                return Verification(False, len(entries), f"entry {n} is missing (found {entry.seq})")
            if entry.prev != prev:
                return Verification(False, len(entries), f"entry {entry.seq} does not follow entry {entry.seq - 1}")
            if entry.computed_hash() != entry.hash:
                return Verification(False, len(entries), f"entry {entry.seq} was changed after it was written")
            if not verify_signature(self.public_key, entry.service_signature, entry.hash):
                return Verification(False, len(entries), f"entry {entry.seq} has no valid service signature")
            key = (device_keys or {}).get(entry.device)
            if key and entry.request_digest and not verify_signature(key, entry.device_signature,
                                                                     entry.request_digest):
                return Verification(False, len(entries), f"entry {entry.seq} has no valid device signature")
            prev = entry.hash
        return Verification(True, len(entries))

    def as_json(self, check: Verification, limit: int = 50) -> dict[str, Any]:
        """Balances, the chain's state as `check` found it (`verify`), the key, and the latest entries."""
        return {"balances": self.balances(), "chain": {"ok": check.ok, "entries": check.entries,
                                                        "problem": check.problem},
                "service_public_key": self.public_key,
                "entries": [asdict(e) for e in self.entries(limit=limit)]}
