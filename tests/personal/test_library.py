"""`pllm.open()`: the README's example runs as written, against the real vault and the real packaged model."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import pllm as library
from pllm.errors import WrongPassphraseError

README = Path(__file__).resolve().parents[2] / "README.md"
Run = Callable[..., subprocess.CompletedProcess[str]]
PASS = {"PLLM_PASSPHRASE": "s3cret"}


def readme_example() -> str:
    section = README.read_text().split("### Your model in Python", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README lost its Python example"
    return found.group(1)


def test_the_readme_example_runs_as_written(pllm: Run) -> None:
    assert pllm("init", "--name", "Mara", env=PASS).returncode == 0
    ran = subprocess.run([sys.executable, "-c", readme_example()], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert len(ran.stdout.splitlines()) >= 3 and "Seabird" in ran.stdout  # the answer read the note it was given
    with library.open(passphrase="s3cret") as me:
        assert "Seabird" not in str(me.served.export())  # forgotten at the end of the example
        assert me.vault.interactions()  # its questions were logged as `ask` logs them (those naming Seabird: forgotten)


def test_a_wrong_passphrase_is_the_vaults_own_error(pllm: Run) -> None:
    assert pllm("init", env=PASS).returncode == 0
    with pytest.raises(WrongPassphraseError):
        library.open(passphrase="wrong")
