"""Files written whole or not at all: the one atomic write every tier uses.

A reader (another process, a crash, a second `pllm` started at once) sees the old file or the new one, never half of
one: the bytes go to a temporary file beside the target, are flushed to disk, and replace it in one rename.

    atomic_write(path, b"...")                     # owner-only (0600) by default: most of what pllm keeps is personal
    with atomic_path(cache / "model.gguf") as tmp:  # for writers that want a path (numpy, llama.cpp)
        np.save(tmp, vectors)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path, *, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside `path` (ending in `suffix`, for writers that insist on one); it replaces `path` when
    the block ends normally and is removed when it raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial{suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes | str, *, mode: int = 0o600) -> None:
    """Write `data` to `path` whole (fsynced before the rename), with permissions `mode`."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as partial:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)


def database_files(path: Path) -> tuple[Path, Path, Path]:
    """A SQLite database's files: the database, its write-ahead log and its shared-memory index."""
    return path, Path(f"{path}-wal"), Path(f"{path}-shm")


def remove_files(paths: tuple[Path, ...]) -> None:
    """Remove each of `paths` that exists."""
    for path in paths:
        path.unlink(missing_ok=True)
