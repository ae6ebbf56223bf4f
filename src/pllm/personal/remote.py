"""How the device reaches the other tiers: HTTP to the cloud service, every request through the privacy gate.

    cloud = CloudClient(settings, PrivacyGate(settings, vault))
    answer = cloud.chat(messages, purpose="ask")          # redacted out, logged, restored on the way back
    items = cloud.augment("tweets", [("Loving Lisbon", None)], n=3, max_tokens=96, temperature=0.9, seed=0)

There is no other path out: this client redacts what it is given itself, so a caller cannot forget to. The
service's address is `PLLM_CLOUD_URL`, the device's key `PLLM_CLOUD_KEY`. Connection failures, timeouts and 5xx
answers are retried with exponential backoff; then the call fails with one line (`CloudUnavailableError`), and
callers that can work offline do so.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pllm.config import Settings
from pllm.errors import CloudError, CloudUnavailableError
from pllm.lm.runtime import GenerationConfig, Message
from pllm.openai_http import OpenAIClient, Unreachable, error_message
from pllm.personal.privacy import Egress, PrivacyGate
from pllm.signing import (
    RECEIPT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    decode_receipt,
    private_key_from_b64,
    private_key_to_b64,
    request_digest,
    sign,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pllm.personal.vault import Vault

# New items one augmentation request may ask for (seeds x per seed): ~10 s on the embedded 270M T-model on two
# cores, well inside the timeout even on a busy machine; a retry then repeats little work.
ITEMS_PER_REQUEST = 8
CONTEXT_ITEMS = 16  # other seeds sent with a batch as context (the T-tier shows 8)


@dataclass(frozen=True)
class RemoteAnswer:
    text: str  # restored on the device
    model: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float


@dataclass(frozen=True)
class RemoteItem:
    seed: int
    text: str  # restored on the device
    label: str | None


class CloudClient:
    """The T-tier service, as the device sees it."""

    destination = "cloud"

    def __init__(self, settings: Settings, gate: PrivacyGate) -> None:
        self.settings = settings
        self.gate = gate
        self.url = settings.cloud_url.rstrip("/")
        self._key: Ed25519PrivateKey | None = None  # read from the vault once, on the first signed request
        self._client: OpenAIClient | None = None

    def _post(self, path: str, payload: dict[str, Any] | None, egress: Egress) -> dict[str, Any]:
        """Send a redacted payload (None: a GET); each attempt is written to the egress log before it leaves."""
        if not self.url:
            raise CloudUnavailableError("no T-tier service is configured: set PLLM_CLOUD_URL (and PLLM_CLOUD_KEY)")
        if self._client is None:
            self._client = OpenAIClient(self.url, key=self.settings.cloud_key, timeout=self.settings.cloud_timeout,
                                        retries=self.settings.cloud_retries)
        body = "" if payload is None else json.dumps(payload, ensure_ascii=False)
        method = "GET" if payload is None else "POST"
        digest = [""]

        def attempt(headers: dict[str, str]) -> None:
            self.gate.record(egress, body)
            digest[0] = self._sign(method, path, body, headers)

        try:
            response = self._client.request(method, path, body, before_attempt=attempt)
        except Unreachable as exc:
            raise CloudUnavailableError(f"the T-tier at {self.url} is unreachable ({exc.problem}); "
                                        "everything but augmentation works offline") from None
        if response.status_code >= 400:
            raise CloudError(f"the T-tier refused the request (HTTP {response.status_code}): "
                             f"{error_message(response)}")
        self._keep_receipt(response.headers.get(RECEIPT_HEADER), digest[0])
        try:
            return dict(response.json())
        except ValueError:
            raise CloudError(f"the T-tier at {self.url} answered with something that is not JSON") from None

    def _sign(self, method: str, path: str, body: str, headers: dict[str, str]) -> str:
        """Sign the request with this device's key (kept in the vault), so the cloud's ledger can show the device
        asked; returns the digest signed ("" without a vault: nothing to keep a key in)."""
        from urllib.parse import urlsplit

        if self.gate.vault is None:
            return ""
        if self._key is None:
            self._key = device_key(self.gate.vault)
        key = self._key
        stamp = f"{time.time():.3f}"
        digest = request_digest(method, urlsplit(self.url + path).path, body.encode("utf-8"), stamp)
        headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER] = stamp, sign(key, digest)
        return digest

    def _keep_receipt(self, header: str | None, digest: str) -> None:
        """Keep the cloud's signed receipt for this request in the vault, if it is for the request this device
        signed and its hash covers its fields (the signature is checked against the cloud's key by `pllm privacy
        receipts`)."""
        if not header or self.gate.vault is None:
            return
        entry = decode_receipt(header)
        if entry is not None and entry.get("request_digest") == digest:
            self.gate.vault.add_receipt(self.url, entry)

    def sync_ledger(self) -> float:
        """Fetch this device's receipts from the cloud's ledger (streamed answers' too) into the vault, and pin the
        cloud's ledger key on first use (a different key later is an error: someone else is signing). Returns the
        balance the cloud reports."""
        vault = self.gate.vault
        reply = self._post("/v1/ledger", None, self.gate.open(self.destination, "ledger"))
        key = str(reply.get("service_public_key", ""))
        if vault is not None:
            pinned = vault.get_meta("cloud_ledger_key")
            if pinned and key != pinned:
                raise CloudError("the cloud signs its ledger with a different key than before; not trusting it")
            vault.set_meta("cloud_ledger_key", key)
            for entry in filter(None, map(decode_receipt, reply.get("receipts", []))):
                vault.add_receipt(self.url, entry)
        return float(reply.get("balance", 0.0))

    def share_feedback(self, items: Sequence[dict[str, str | None]]) -> float:
        """Feedback the user chose to share ({prompt, answer, verdict, correction}), redacted like every request, to
        the cloud's contributions; returns the credits it earned."""
        egress = self.gate.open(self.destination, "contribution")
        payload = {"kind": "feedback", "items": [
            {"prompt": egress.redact(str(i["prompt"])), "answer": egress.redact(str(i["answer"])),
             "verdict": i["verdict"],
             "correction": egress.redact(str(i["correction"])) if i.get("correction") else None}
            for i in items]}
        return float(self._post("/v1/contributions", payload, egress).get("credited", 0.0))

    def chat(self, messages: Sequence[Message], *, purpose: str, max_tokens: int = GenerationConfig.max_tokens,
             temperature: float = GenerationConfig.temperature) -> RemoteAnswer:
        """One answer from the T-model; the messages leave redacted, the answer comes back restored."""
        return self._ask("/v1/chat/completions", self.destination, purpose, messages, max_tokens, temperature)

    def _ask(self, path: str, destination: str, purpose: str, messages: Sequence[Message], max_tokens: int,
             temperature: float) -> RemoteAnswer:
        egress = self.gate.open(destination, purpose)
        payload = {"messages": [{"role": m["role"], "content": egress.redact(m["content"])} for m in messages],
                   "max_tokens": max_tokens, "temperature": temperature}
        started = time.perf_counter()
        reply = self._post(path, payload, egress)
        try:
            text = reply["choices"][0]["message"]["content"] or ""
            usage = reply.get("usage", {})
        except (KeyError, IndexError, TypeError):
            raise CloudError("the T-tier's answer has no choices[0].message.content") from None
        return RemoteAnswer(egress.restore(text), str(reply.get("model", "")), int(usage.get("prompt_tokens", 0)),
                            int(usage.get("completion_tokens", 0)), time.perf_counter() - started)

    def experts(self) -> list[dict[str, Any]]:
        """The E-tier's catalog: each expert's name, description, example questions and exam scores. Nothing of
        the user's goes out (the request has no body); it is logged like every request."""
        reply = self._post("/v1/experts", None, self.gate.open(self.destination, "experts"))
        return [e for e in reply.get("data", []) if isinstance(e, dict) and "name" in e]

    def ask_expert(self, name: str, messages: Sequence[Message], *, max_tokens: int = GenerationConfig.max_tokens,
                   temperature: float = GenerationConfig.temperature) -> RemoteAnswer:
        """One answer from a domain expert; out redacted (destination expert:NAME), back restored."""
        return self._ask(f"/v1/experts/{name}/chat/completions", f"expert:{name}", "ask", messages, max_tokens,
                         temperature)

    def augment(self, task: str, seeds: Sequence[tuple[str, str | None]], *, n: int, max_tokens: int,
                temperature: float, seed: int) -> tuple[list[RemoteItem], dict[str, int], str]:
        """New items written by the T-model from the user's seeds (text, label), returned restored, with the usage
        and the model's name; sent in requests of at most ITEMS_PER_REQUEST new items, each request with its own
        placeholders and the other seeds as context (the T-model writes in view of all of them). How many and how
        they are sampled is the caller's (`personal.augment.AugmentConfig`)."""
        items: list[RemoteItem] = []
        usage: Counter[str] = Counter()
        model = ""
        per_request = max(1, ITEMS_PER_REQUEST // n)
        for first in range(0, len(seeds), per_request):
            batch = seeds[first:first + per_request]
            egress = self.gate.open(self.destination, "augment")
            # The seeds nearest this batch, at most CONTEXT_ITEMS: the T-tier shows the model a few (and refuses a
            # list of over 64), and what it would not show need not leave the device.
            half = CONTEXT_ITEMS // 2
            context = [*seeds[max(0, first - half):first], *seeds[first + per_request:first + per_request + half]]
            payload = {"task": task, "n": n, "max_tokens": max_tokens, "temperature": temperature, "seed": seed,
                       "seeds": [self._seed(egress, text, label) for text, label in batch],
                       "context": [self._seed(egress, text, label) for text, label in context]}
            reply = self._post("/v1/augment", payload, egress)
            items += [RemoteItem(first + int(i["seed"]), egress.restore(str(i["text"])),
                                 egress.restore(i["label"]) if i.get("label") else i.get("label"))
                      for i in reply.get("items", []) if isinstance(i, dict) and "text" in i and "seed" in i]
            usage.update({k: int(v) for k, v in reply.get("usage", {}).items()})
            usage["requests"] += int(reply.get("requests", 0))
            model = str(reply.get("model", model))
        return items, dict(usage), model

    @staticmethod
    def _seed(egress: Egress, text: str, label: str | None) -> dict[str, str | None]:
        return {"text": egress.redact(text), "label": egress.redact(label) if label else label}


def device_key(vault: Vault) -> Ed25519PrivateKey:
    """This device's Ed25519 signing key, made on first use and kept in the (encrypted) vault."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    stored = vault.get_meta("device_signing_key")
    if stored:
        return private_key_from_b64(stored)
    key = Ed25519PrivateKey.generate()
    vault.set_meta("device_signing_key", private_key_to_b64(key))
    return key
