"""The one atomic write: whole or not at all, owner-only by default, nothing left behind on failure."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pllm.files import atomic_path, atomic_write


def test_a_write_replaces_the_file_whole_and_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "adapter.bin"
    atomic_write(path, b"old")
    atomic_write(path, "new text")
    assert path.read_text() == "new text"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["adapter.bin"]


def test_a_writer_that_fails_leaves_the_old_file_and_no_partial(tmp_path: Path) -> None:
    path = tmp_path / "cache.npy"
    path.write_bytes(b"kept")
    with pytest.raises(RuntimeError), atomic_path(path, suffix=".npy") as partial:
        assert partial.name.endswith(".npy") and partial.parent == tmp_path
        partial.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"kept"
    assert [p.name for p in tmp_path.iterdir()] == ["cache.npy"]
