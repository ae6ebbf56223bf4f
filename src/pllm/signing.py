"""Signatures both sides of the ledger check (Ed25519, from `cryptography`): the device signs each request it
sends the cloud, the cloud signs each ledger entry it returns as a receipt. Shared by `cloud.ledger` and
`personal.remote`, which must agree on every byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

TIMESTAMP_HEADER = "X-Pllm-Timestamp"
SIGNATURE_HEADER = "X-Pllm-Signature"
RECEIPT_HEADER = "X-Pllm-Receipt"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def request_digest(method: str, path: str, body: bytes, timestamp: str) -> str:
    """What a device signs for one request: method, path, the body's SHA-256 and the time it was sent."""
    return hashlib.sha256(f"{method}\n{path}\n{hashlib.sha256(body).hexdigest()}\n{timestamp}".encode()).hexdigest()


def entry_hash(fields: dict[str, Any]) -> str:
    """The hash of a ledger entry: its fields (hash and signature left out), canonical JSON."""
    body = {k: v for k, v in fields.items() if k not in ("hash", "service_signature")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def encode_receipt(fields: dict[str, Any]) -> str:
    """A signed ledger entry as one header value: base64 of its canonical JSON."""
    return b64(json.dumps(fields, sort_keys=True).encode())


def decode_receipt(text: str) -> dict[str, Any] | None:
    """The entry in a receipt, or None when it is not one or its hash does not cover its fields."""
    try:
        entry = json.loads(base64.b64decode(text))
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and entry.get("hash") == entry_hash(entry) else None


def public_key_b64(key: Ed25519PrivateKey) -> str:
    return b64(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    """ValueError when `text` is not a base64 Ed25519 public key."""
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None


def sign(key: Ed25519PrivateKey, message: str) -> str:
    return b64(key.sign(message.encode()))


def verify_signature(public_key: str, signature: str, message: str) -> bool:
    try:
        public_key_from_b64(public_key).verify(base64.b64decode(signature), message.encode())
        return True
    except (InvalidSignature, ValueError):
        return False


def private_key_from_b64(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text))


def private_key_to_b64(key: Ed25519PrivateKey) -> str:
    return b64(key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption()))
