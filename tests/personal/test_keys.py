"""Where the passphrase comes from: the environment, then the OS keyring, then a prompt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends.fail import Keyring as FailKeyring

from pllm.errors import PassphraseRequiredError
from pllm.personal.keys import forget_in_keyring, resolve_passphrase, store_in_keyring


class MemoryKeyring(KeyringBackend):
    """A complete keyring backend that keeps secrets in this process (the machine here has no OS keyring)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.secrets.pop((service, username), None)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_the_environment_comes_first(monkeypatch: pytest.MonkeyPatch, memory_keyring: MemoryKeyring,
                                     tmp_path: Path) -> None:
    store_in_keyring(tmp_path / "vault.db", "from-keyring")
    monkeypatch.setenv("PLLM_PASSPHRASE", "from-env")
    assert resolve_passphrase(tmp_path / "vault.db") == "from-env"


def test_then_the_keyring(memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    vault = tmp_path / "vault.db"
    assert store_in_keyring(vault, "from-keyring")
    assert resolve_passphrase(vault, prompt=lambda _: "from-prompt") == "from-keyring"
    forget_in_keyring(vault)
    assert resolve_passphrase(vault, prompt=lambda _: "from-prompt") == "from-prompt"


def test_then_a_prompt_confirmed_twice_for_a_new_vault(tmp_path: Path) -> None:
    answers = iter(["one", "two"])
    with pytest.raises(PassphraseRequiredError, match="differ"):
        resolve_passphrase(tmp_path / "v.db", prompt=lambda _: next(answers), confirm=True)
    assert resolve_passphrase(tmp_path / "v.db", prompt=lambda _: "same", confirm=True) == "same"


def test_no_source_at_all(tmp_path: Path) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(FailKeyring())  # what a headless machine without a secret service has
    try:
        with pytest.raises(PassphraseRequiredError, match="set PLLM_PASSPHRASE"):
            resolve_passphrase(tmp_path / "v.db")
        assert not store_in_keyring(tmp_path / "v.db", "x")
    finally:
        keyring.set_keyring(previous)
