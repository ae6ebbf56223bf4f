"""Devices the cloud service accepts: API keys stored hashed, and a per-device rate limit.

    registry = DeviceRegistry(settings.paths.cloud / "cloud.db")
    key = registry.add("maras-laptop")      # shown once; only its SHA-256 is stored
    registry.verify(key)                    # "maras-laptop"

Keys are 256 random bits, so a plain SHA-256 is enough (a slow password hash protects guessable secrets).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

from pllm.errors import UsageError
from pllm.signing import public_key_from_b64

KEY_PREFIX = "pllm-"
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Device:
    id: str
    created_at: float
    revoked: bool


class DeviceRegistry:
    """The devices and their hashed keys, in the service's own SQLite file (the cloud's data, not a user's)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()
        self.conn.execute("CREATE TABLE IF NOT EXISTS devices (id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, "
                          "created_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0)")
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(devices)")}
        if "public_key" not in columns:  # the device's Ed25519 key for signed requests (ledger); '' = unsigned
            self.conn.execute("ALTER TABLE devices ADD COLUMN public_key TEXT NOT NULL DEFAULT ''")

    def add(self, device_id: str, public_key: str = "") -> str:
        """Register a device (or give it a new key) and return its key; the key itself is not kept. With
        `public_key` (the device's Ed25519 key, base64), every request it sends must carry its signature."""
        if not DEVICE_ID.match(device_id):
            raise UsageError(f"bad device id {device_id!r}: letters, digits, '.', '_' and '-', at most 64")
        if public_key:
            try:
                public_key_from_b64(public_key)
            except ValueError:
                raise UsageError("the public key is not a base64 Ed25519 key (`pllm privacy device-key` prints "
                                 "the device's)") from None
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.lock:
            self.conn.execute("INSERT INTO devices (id, key_hash, created_at, public_key) VALUES (?, ?, ?, ?) "
                              "ON CONFLICT(id) DO UPDATE SET key_hash = excluded.key_hash, revoked = 0, "
                              "public_key = excluded.public_key", (device_id, key_hash(key), time.time(), public_key))
        return key

    def public_key(self, device_id: str) -> str:
        """The device's registered signing key ('' when it does not sign)."""
        with self.lock:
            row = self.conn.execute("SELECT public_key FROM devices WHERE id = ?", (device_id,)).fetchone()
        return str(row[0]) if row else ""

    def public_keys(self) -> dict[str, str]:
        """Each device's registered signing key (devices without one are left out)."""
        with self.lock:
            return dict(self.conn.execute("SELECT id, public_key FROM devices WHERE public_key != ''").fetchall())

    def verify(self, key: str) -> str | None:
        """The device a key belongs to, or None (unknown or revoked)."""
        if not key.startswith(KEY_PREFIX):
            return None
        with self.lock:
            row = self.conn.execute("SELECT id FROM devices WHERE key_hash = ? AND revoked = 0",
                                    (key_hash(key),)).fetchone()
        return row[0] if row else None

    def revoke(self, device_id: str) -> bool:
        with self.lock:
            return self.conn.execute("UPDATE devices SET revoked = 1 WHERE id = ?", (device_id,)).rowcount > 0

    def devices(self) -> list[Device]:
        with self.lock:
            rows = self.conn.execute("SELECT id, created_at, revoked FROM devices ORDER BY id").fetchall()
        return [Device(r[0], r[1], bool(r[2])) for r in rows]


class RateLimiter:
    """At most `per_minute` requests per device in any sliding minute."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.seen: dict[str, deque[float]] = defaultdict(deque)
        self.lock = threading.Lock()

    def allow(self, device: str, now: float | None = None) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        now = time.monotonic() if now is None else now
        with self.lock:
            window = self.seen[device]
            while window and window[0] <= now - 60:
                window.popleft()
            if len(window) >= self.per_minute:
                return max(0.0, window[0] + 60 - now)
            window.append(now)
            return 0.0
