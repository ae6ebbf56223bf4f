"""The ledger: metered calls, signed on both sides, hash-chained; a device over its limit gets 402; a tampered
ledger is caught. The real service with the embedded T-model, on loopback; the device's real signing key."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pllm.cloud.ledger import Ledger
from pllm.cloud.server import create_app
from pllm.config import Settings
from pllm.http_serving import serve_background
from pllm.signing import (
    RECEIPT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    entry_hash,
    public_key_b64,
    request_digest,
    sign,
    verify_signature,
)

QUESTION = {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 4}


def test_the_chain_holds_and_any_change_breaks_it(tmp_path: Path) -> None:
    ledger = Ledger.in_folder(tmp_path)
    ledger.append("grant", "laptop", "opening grant", amount=10)
    ledger.append("charge", "laptop", "expert:cooking", amount=-0.25, tokens_in=40, tokens_out=60)
    ledger.append("credit", "phone", "contribution:feedback", amount=0.4)
    assert ledger.verify().ok and ledger.balance("laptop") == pytest.approx(9.75)
    assert ledger.balances()["providers"] == {"expert:cooking": pytest.approx(0.25)}
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        ledger.conn.execute("UPDATE entries SET amount = 0 WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        ledger.conn.execute("DELETE FROM entries WHERE seq = 2")
    # Someone with the file and no respect for triggers: each kind of change is named.
    raw = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
    raw.execute("DROP TRIGGER entries_no_update")
    raw.execute("UPDATE entries SET amount = 0 WHERE seq = 2")
    assert Ledger.in_folder(tmp_path).verify().problem == "entry 2 was changed after it was written"
    raw.execute("DROP TRIGGER entries_no_update")  # opening the ledger put its triggers back
    raw.execute("UPDATE entries SET amount = -0.25 WHERE seq = 2")
    assert Ledger.in_folder(tmp_path).verify().ok
    raw.execute("DROP TRIGGER entries_no_delete")
    raw.execute("DELETE FROM entries WHERE seq = 2")
    assert Ledger.in_folder(tmp_path).verify().problem == "entry 2 is missing (found 3)"


@pytest.fixture
def cloud(foundation: object, tmp_path: Path) -> Iterator[tuple[str, Ledger, dict[str, str]]]:
    settings = Settings(home=tmp_path, ledger_opening_grant=0.05)  # enough for about one short answer
    app = create_app(settings, foundation=foundation, state_dir=tmp_path / "cloud")  # type: ignore[arg-type]
    device_key = Ed25519PrivateKey.generate()
    keys = {"signed": app.state.devices.add("signed", public_key_b64(device_key)),
            "plain": app.state.devices.add("plain")}
    with serve_background(app) as url:
        yield url, app.state.ledger, {"key": keys["signed"], "plain": keys["plain"], "private": device_key}


def _signed(key: Ed25519PrivateKey, path: str, body: bytes, stamp: str | None = None) -> dict[str, str]:
    stamp = stamp or f"{time.time():.3f}"
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(key, request_digest("POST", path, body, stamp))}


def test_calls_are_metered_signed_on_both_sides_and_refused_past_the_limit(cloud: tuple) -> None:
    url, ledger, keys = cloud
    path = "/v1/chat/completions"
    body = json.dumps(QUESTION).encode()
    auth = {"Authorization": f"Bearer {keys['key']}", "Content-Type": "application/json"}
    unsigned = httpx.post(url + path, content=body, headers=auth)
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "invalid_signature"
    stale = httpx.post(url + path, content=body, headers={**auth, **_signed(keys["private"], path, body, "1000")})
    assert stale.status_code == 401
    paid = httpx.post(url + path, content=body, headers={**auth, **_signed(keys["private"], path, body)})
    assert paid.status_code == 200, paid.text
    receipt = json.loads(base64.b64decode(paid.headers[RECEIPT_HEADER]))
    usage = paid.json()["usage"]
    assert (receipt["tokens_in"], receipt["tokens_out"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert receipt["hash"] == entry_hash(receipt) and receipt["provider"] == "t-model" and receipt["amount"] < 0
    assert verify_signature(ledger.public_key, receipt["service_signature"], receipt["hash"])  # the cloud's word
    assert verify_signature(public_key_b64(keys["private"]), receipt["device_signature"],
                            receipt["request_digest"])  # the device's
    assert ledger.balance("signed") < 0  # 0.05 granted, one answer cost more: the next is refused
    refused = httpx.post(url + path, content=body, headers={**auth, **_signed(keys["private"], path, body)})
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "insufficient_quota"
    shared = json.dumps({"items": [{"prompt": "q", "answer": "a", "verdict": "up"}] * 3}).encode()
    credit = httpx.post(url + "/v1/contributions", content=shared,
                        headers={**auth, **_signed(keys["private"], "/v1/contributions", shared)})
    assert credit.status_code == 200 and credit.json()["credited"] == pytest.approx(0.6)
    again = httpx.post(url + path, content=body, headers={**auth, **_signed(keys["private"], path, body)})
    assert again.status_code == 200  # the contribution paid for it
    plain = httpx.post(url + path, json=QUESTION, headers={"Authorization": f"Bearer {keys['plain']}"})
    assert plain.status_code == 200  # a device registered without a key is not asked to sign
    assert ledger.verify({"signed": public_key_b64(keys["private"])}).ok
    assert {e.kind for e in ledger.entries()} == {"grant", "charge", "credit"}
