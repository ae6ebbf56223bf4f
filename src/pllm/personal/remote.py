"""How the device reaches the other tiers: HTTP to the cloud service, every request through the privacy gate.

    cloud = CloudClient(settings, PrivacyGate(settings, vault))
    answer = cloud.chat(messages, purpose="ask")          # redacted out, logged, restored on the way back
    items = cloud.augment("tweets", [("Loving Lisbon", None)], n=3)

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
from typing import Any

from pllm.config import Settings
from pllm.errors import CloudError, CloudUnavailableError
from pllm.lm.runtime import Message
from pllm.personal.privacy import Egress, PrivacyGate

BACKOFF_SECONDS = 0.5  # first retry after this, doubling
# New items one augmentation request may ask for (seeds x per seed): ~10 s on the embedded 270M T-model on two
# cores, well inside the timeout even on a busy machine; a retry then repeats little work.
ITEMS_PER_REQUEST = 8


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

    def _post(self, path: str, payload: dict[str, Any], egress: Egress) -> dict[str, Any]:
        """Send a redacted payload; each attempt is written to the egress log before it leaves."""
        import httpx

        if not self.url:
            raise CloudUnavailableError("no T-tier service is configured: set PLLM_CLOUD_URL (and PLLM_CLOUD_KEY)")
        headers = {"Content-Type": "application/json"}
        if self.settings.cloud_key:
            headers["Authorization"] = f"Bearer {self.settings.cloud_key}"
        body = json.dumps(payload, ensure_ascii=False)
        problem = ""
        for attempt in range(self.settings.cloud_retries + 1):
            if attempt:
                time.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
            self.gate.record(egress, body)
            try:
                response = httpx.post(self.url + path, content=body.encode("utf-8"), headers=headers,
                                      timeout=self.settings.cloud_timeout)
            except httpx.HTTPError as exc:
                problem = type(exc).__name__ if not str(exc) else str(exc)
                continue
            if response.status_code >= 500:
                problem = f"HTTP {response.status_code}: {_message(response)}"
                continue
            if response.status_code >= 400:
                raise CloudError(f"the T-tier refused the request (HTTP {response.status_code}): {_message(response)}")
            try:
                return dict(response.json())
            except ValueError:
                raise CloudError(f"the T-tier at {self.url} answered with something that is not JSON") from None
        raise CloudUnavailableError(f"the T-tier at {self.url} is unreachable ({problem}); "
                                    "everything but augmentation works offline")

    def chat(self, messages: Sequence[Message], *, purpose: str, max_tokens: int = 256,
             temperature: float = 0.0) -> RemoteAnswer:
        """One answer from the T-model; the messages leave redacted, the answer comes back restored."""
        egress = self.gate.open(self.destination, purpose)
        payload = {"messages": [{"role": m["role"], "content": egress.redact(m["content"])} for m in messages],
                   "max_tokens": max_tokens, "temperature": temperature}
        started = time.perf_counter()
        reply = self._post("/v1/chat/completions", payload, egress)
        try:
            text = reply["choices"][0]["message"]["content"] or ""
            usage = reply.get("usage", {})
        except (KeyError, IndexError, TypeError):
            raise CloudError("the T-tier's answer has no choices[0].message.content") from None
        return RemoteAnswer(egress.restore(text), str(reply.get("model", "")), int(usage.get("prompt_tokens", 0)),
                            int(usage.get("completion_tokens", 0)), time.perf_counter() - started)

    def augment(self, task: str, seeds: Sequence[tuple[str, str | None]], *, n: int = 3, max_tokens: int = 96,
                temperature: float = 0.9, seed: int = 0) -> tuple[list[RemoteItem], dict[str, int], str]:
        """New items written by the T-model from the user's seeds (text, label), returned restored, with the usage
        and the model's name; sent in requests of at most ITEMS_PER_REQUEST new items, each request with its own
        placeholders."""
        items: list[RemoteItem] = []
        usage: Counter[str] = Counter()
        model = ""
        per_request = max(1, ITEMS_PER_REQUEST // n)
        for first in range(0, len(seeds), per_request):
            batch = seeds[first:first + per_request]
            egress = self.gate.open(self.destination, "augment")
            payload = {"task": task, "n": n, "max_tokens": max_tokens, "temperature": temperature, "seed": seed,
                       "seeds": [{"text": egress.redact(text), "label": egress.redact(label) if label else label}
                                 for text, label in batch]}
            reply = self._post("/v1/augment", payload, egress)
            items += [RemoteItem(first + int(i["seed"]), egress.restore(str(i["text"])),
                                 egress.restore(i["label"]) if i.get("label") else i.get("label"))
                      for i in reply.get("items", []) if isinstance(i, dict) and "text" in i and "seed" in i]
            usage.update({k: int(v) for k, v in reply.get("usage", {}).items()})
            usage["requests"] += int(reply.get("requests", 0))
            model = str(reply.get("model", model))
        return items, dict(usage), model


def _message(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase
