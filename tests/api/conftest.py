"""The device API's tests share one kind of vault: the user Mara, the test module's PASSPHRASE, and its NOTE as her
one document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pllm.personal.vault import Vault, create_vault


@pytest.fixture
def vault(pllm_home: Path, request: pytest.FixtureRequest) -> Iterator[Vault]:
    v = create_vault(pllm_home / "vault.db", request.module.PASSPHRASE, name="Mara")
    v.add_document(source="note.md", kind="md", content=request.module.NOTE)
    yield v
    v.close()
