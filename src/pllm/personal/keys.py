"""Where the vault passphrase comes from: PLLM_PASSPHRASE, else the OS keyring, else a prompt. Never a plain file.

The prompt is the caller's (the CLI passes one that hides input); without one, and with nothing in the
environment or keyring, we fail with a line that says how to give a passphrase.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pllm.errors import PassphraseRequiredError

KEYRING_SERVICE = "pllm"
ENV_VAR = "PLLM_PASSPHRASE"

Prompt = Callable[[str], str]


def _keyring_get(vault: Path) -> str | None:
    try:
        import keyring
        from keyring.errors import KeyringError

        return keyring.get_password(KEYRING_SERVICE, str(vault.resolve()))
    except (ImportError, KeyringError, RuntimeError):  # no backend on a headless machine, a locked keyring
        return None


def store_in_keyring(vault: Path, passphrase: str) -> bool:
    """Remember the passphrase in the OS keyring; False when there is no usable keyring."""
    try:
        import keyring
        from keyring.errors import KeyringError

        keyring.set_password(KEYRING_SERVICE, str(vault.resolve()), passphrase)
        return True
    except (ImportError, KeyringError, RuntimeError):
        return False


def forget_in_keyring(vault: Path) -> None:
    try:
        import keyring
        from keyring.errors import KeyringError, PasswordDeleteError

        keyring.delete_password(KEYRING_SERVICE, str(vault.resolve()))
    except (ImportError, KeyringError, PasswordDeleteError, RuntimeError):
        pass


def resolve_passphrase(vault: Path, prompt: Prompt | None = None, *, confirm: bool = False) -> str:
    """The passphrase for `vault` from the first source that has one."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    stored = None if confirm else _keyring_get(vault)
    if stored:
        return stored
    if prompt is None:
        raise PassphraseRequiredError(
            f"no passphrase: set {ENV_VAR}, store one in the OS keyring (`pllm init --keyring`), or run interactively"
        )
    passphrase = prompt("Vault passphrase")
    if confirm and prompt("Repeat the passphrase") != passphrase:
        raise PassphraseRequiredError("the two passphrases differ")
    if not passphrase:
        raise PassphraseRequiredError("the passphrase is empty")
    return passphrase
