"""pllm as a Python library for app developers: the user's model in a few calls, on the same path `pllm serve`
answers on (`serving.ServedModel`), so a library answer, a served one and `pllm ask` are one code path.

    import pllm
    with pllm.open(passphrase="s3cret") as me:           # PLLM_HOME, or home=...
        me.remember("My boat is called Seabird.")
        answer = me.ask("What is my boat called?")
        me.feedback(answer.id, "up")
        print(answer.text, me.profile()["facts"])
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pllm.config import Settings, get_settings
from pllm.lm.models import resolve_model
from pllm.lm.runtime import GenerationConfig, Usage
from pllm.openai_http import completion_id
from pllm.personal.adapt import AdaptReport, run_adaptation
from pllm.personal.forget import ForgetOutcome
from pllm.personal.ingest import Record, passages, store_records
from pllm.personal.keys import resolve_passphrase
from pllm.personal.serving import PERSONAL, ServedModel
from pllm.personal.vault import Vault, open_vault


@dataclass(frozen=True)
class Answer:
    """One answer, and the id that `feedback` names it by."""

    text: str
    id: str
    usage: Usage

    def __str__(self) -> str:
        return self.text


class PersonalModel:
    """The user's model: their vault (open until `close`), the base model and their active adapter."""

    def __init__(self, settings: Settings, vault: Vault) -> None:
        from pllm.lm.runtime import Runtime  # loads llama.cpp: only when a model is opened

        self.settings, self.vault = settings, vault
        self.served = ServedModel(Runtime.from_settings(settings), vault, settings, resolve_model(settings).name)

    # -- asking --------------------------------------------------------------------------------------------------
    def _answer(self, question: str, max_tokens: int | None, ident: str, usage: Usage) -> Iterator[str]:
        config = GenerationConfig.from_settings(self.settings, max_tokens=max_tokens)
        return self.served.chat([{"role": "user", "content": question}], config, usage, model=PERSONAL,
                                completion_id=ident)

    def stream(self, question: str, *, max_tokens: int | None = None, answer_id: str | None = None) -> Iterator[str]:
        """The answer piece by piece, personalised from the vault and with the active adapter, logged as `ask` does."""
        yield from self._answer(question, max_tokens, answer_id or completion_id("chat.completion"), Usage())

    def ask(self, question: str, *, max_tokens: int | None = None) -> Answer:
        """The whole answer, with its id."""
        ident, usage = completion_id("chat.completion"), Usage()
        return Answer("".join(self._answer(question, max_tokens, ident, usage)), ident, usage)

    # -- what the user gives and takes back ----------------------------------------------------------------------
    def remember(self, text: str, *, source: str = "pllm.remember") -> int:
        """Store `text` in the vault (as its passages, deduplicated) and learn the facts it states; the passages
        that were new."""
        records = [Record(source, "note", passage, dated) for passage, dated in passages(text, dated=time.time())]
        with self.served.lock:
            added, _, _ = store_records(self.vault, records, source)
        return added

    def feedback(self, answer_id: str, kind: str, value: str | None = None) -> int:
        """up, down, edit (value: the answer you wanted), regenerate or rating (value: 1-5) on an answer."""
        feedback_id, _ = self.served.feedback(answer_id, kind, value)
        return feedback_id

    def forget(self, text: str, *, whole_file: bool = False) -> ForgetOutcome:
        """Delete the passages that hold `text` (literal), and retire every adapter version that trained on them."""
        return self.served.forget(query=text, whole_file=whole_file)

    def adapt(self, *, force: bool = False) -> AdaptReport:
        """Train (or resume) the personal adapter here and promote it if it passes its gate; answers use it from
        the next question on."""
        with self.served.lock:
            return run_adaptation(self.settings, self.vault, force=force)

    def profile(self) -> dict[str, object]:
        """What the vault knows about the user: facts, topics, style, feedback."""
        return self.served.profile()

    # -- closing -------------------------------------------------------------------------------------------------
    def close(self) -> None:
        self.served.close()
        self.vault.close()

    def __enter__(self) -> PersonalModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_model(home: str | Path | None = None, passphrase: str | None = None, **settings: Any) -> PersonalModel:
    """The user's model in `home` (else PLLM_HOME, else the default home), unlocked with `passphrase` (else
    PLLM_PASSPHRASE or the keyring); other keyword arguments are settings (`threads=2`, `model=...`)."""
    config = get_settings(home=Path(home) if home is not None else None, **settings)
    key = passphrase if passphrase is not None else resolve_passphrase(config.paths.vault)
    return PersonalModel(config, open_vault(config.paths.vault, key))
