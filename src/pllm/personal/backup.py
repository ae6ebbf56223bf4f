"""Backups of the user's home: the vault and every adapter version in one file, encrypted under the passphrase.

A backup holds what the user would lose with the device: the vault (texts, facts, interactions, feedback, the device
key, the adapters' data key and the stack that says which version is active) and the encrypted files of every live
adapter version. Not model files (downloadable), merged-model caches (rebuilt on demand), an interrupted training
run (retrained), nor cloud/ (the T-tier service's state, not the user's).

The vault is copied with `sqlcipher_export` inside one read transaction, so a `pllm serve` or an ingest committing
meanwhile is wholly in the copy or wholly out of it; the raw file is never read while a writer may be active.

File format: a header, then a tar stream sealed in 1 MiB AES-256-GCM chunks. Each chunk's nonce carries its index and
a last-chunk flag, and the header is every chunk's associated data, so a flipped byte, a reordered, dropped or
appended chunk, or a truncated file all fail authentication (the STREAM construction).

    header = b"PLLMBAK1" | log2 N, r, p of scrypt (1 byte each) | salt (16) | nonce prefix (7) | verifier (16)

scrypt(passphrase, salt) gives 48 bytes: the AES key, then a verifier, so a wrong passphrase is told apart from a
damaged file before anything is written. Restore unpacks into a folder inside the home, opens the vault and decrypts
the active adapter there, and only then renames it into place.

    report = write_backup(vault, settings.paths.adapters, Path("pllm.backup"), passphrase)
    report = restore_backup(Path("pllm.backup"), settings.paths, passphrase, force=False)
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, cast

from pllm import __version__
from pllm.config import Paths
from pllm.errors import UsageError
from pllm.files import atomic_path, database_files
from pllm.personal.adapters import AdapterStore
from pllm.personal.records import AdapterRecords
from pllm.personal.vault import Vault, open_vault, sql_string

MAGIC = b"PLLMBAK1"
FORMAT = "pllm-backup/1"
SCRYPT = (17, 8, 1)  # log2 N, r, p: 128 MiB and ~0.3 s per derivation, OWASP's recommendation
CHUNK = 1 << 20  # plaintext bytes per sealed chunk
TAG = 16
HEADER = len(MAGIC) + 3 + 16 + 7 + 16
ADAPTER_FILE = re.compile(r"v\d+\.(gguf|peft)\.enc")
ATTEMPTS = 3  # snapshots taken when a version is retired between the snapshot and reading its files


class BackupError(UsageError):
    """A backup file is not one, is damaged, or was made under another passphrase."""


@dataclass(frozen=True)
class BackupReport:
    path: str
    bytes: int
    documents: int
    facts: int
    versions: list[str]
    active: str | None
    missing: list[str]  # files of live versions already absent from the home (backed up without them)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RestoreReport:
    home: str
    created_at: float  # when the backup was made
    documents: int
    facts: int
    versions: list[str]
    active: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- sealing -------------------------------------------------------------------------------------------------------
def _derive(passphrase: str, salt: bytes, logn: int, r: int, p: int) -> tuple[bytes, bytes]:
    """(AES key, verifier) from the passphrase; the parameters come from the header, so they can grow later."""
    n = 1 << logn
    out = hashlib.scrypt(passphrase.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=129 * r * (n + p + 2),
                         dklen=48)
    return out[:32], out[32:]


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class _SealingWriter:
    """A write-only file object that seals what it is given in chunks onto `out` (tarfile writes into it)."""

    def __init__(self, out: IO[bytes], passphrase: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        salt, self.prefix = secrets.token_bytes(16), secrets.token_bytes(7)
        key, verifier = _derive(passphrase, salt, *SCRYPT)
        self.header = MAGIC + bytes(SCRYPT) + salt + self.prefix + verifier
        self.aead, self.out, self.buffer, self.index = AESGCM(key), out, bytearray(), 0
        out.write(self.header)

    def _seal(self, data: bytes, last: bool) -> None:
        self.out.write(self.aead.encrypt(_nonce(self.prefix, self.index, last), data, self.header))
        self.index += 1

    def write(self, data: bytes) -> int:
        self.buffer += data
        while len(self.buffer) > CHUNK:  # keep the tail: the last chunk is sealed as last by finish()
            self._seal(bytes(self.buffer[:CHUNK]), last=False)
            del self.buffer[:CHUNK]
        return len(data)

    def finish(self) -> None:
        self._seal(bytes(self.buffer), last=True)
        self.buffer.clear()


class _OpeningReader:
    """A read-only file object that opens sealed chunks from `source` one at a time (tarfile reads from it); it
    releases no byte of a chunk before that chunk authenticates."""

    def __init__(self, source: IO[bytes], passphrase: str, name: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        header = source.read(HEADER)
        if len(header) < HEADER or not header.startswith(MAGIC):
            raise BackupError(f"{name} is not a pllm backup")
        logn, r, p = header[8:11]
        if not (10 <= logn <= 22 and 1 <= r <= 32 and 1 <= p <= 16 and (128 << logn) * r <= 1 << 30):
            raise BackupError(f"{name} is damaged: its key parameters are out of range")
        salt, self.prefix, verifier = header[11:27], header[27:34], header[34:50]
        key, expected = _derive(passphrase, salt, logn, r, p)
        if not hmac.compare_digest(verifier, expected):
            raise BackupError(f"wrong passphrase for {name} (it opens with the vault's passphrase when it was made)")
        self.aead, self.source, self.header, self.name = AESGCM(key), source, header, name
        self.pending = source.read(CHUNK + TAG)
        self.plain, self.index, self.done = b"", 0, False

    def _open_next(self) -> None:
        from cryptography.exceptions import InvalidTag

        following = self.source.read(CHUNK + TAG)
        last = not following
        try:
            self.plain = self.aead.decrypt(_nonce(self.prefix, self.index, last), self.pending, self.header)
        except InvalidTag:
            raise BackupError(f"{self.name} is damaged or was tampered with: it fails authentication") from None
        self.pending, self.index, self.done = following, self.index + 1, last

    def read(self, size: int = -1) -> bytes:
        parts, want = [], size if size >= 0 else sys.maxsize
        while want > 0:
            if not self.plain:
                if self.done:
                    break
                self._open_next()
            piece = self.plain[:want]
            self.plain, want = self.plain[len(piece):], want - len(piece)
            parts.append(piece)
        return b"".join(parts)

    def verify_to_end(self) -> None:
        """Open every remaining chunk: a file cut after the tar's last entry must fail too."""
        while self.read(CHUNK):
            pass


# -- backup --------------------------------------------------------------------------------------------------------
def _snapshot(vault: Vault, folder: Path, copy: Path, passphrase: str) -> dict[str, Any]:
    """Copy the vault into `copy` (SQLCipher-encrypted under the same passphrase) in one read transaction, and read
    from that same snapshot which adapter versions are live and which is active."""
    conn = vault.conn
    conn.execute(f"ATTACH DATABASE {sql_string(str(copy))} AS backup KEY {sql_string(passphrase)}")
    try:
        conn.execute("BEGIN")  # deferred: the first read pins the snapshot; writers on other connections go on
        try:
            manifest = {"format": FORMAT, "created_at": time.time(), "pllm": __version__,
                        "versions": [v for v, _ in AdapterRecords(vault).live_trained_on()],
                        "active": AdapterStore(vault, folder).active(),
                        "documents": vault.count("documents"), "facts": vault.count("profile_facts")}
            conn.execute("SELECT sqlcipher_export('backup')")
        except BaseException:
            if conn.in_transaction:  # SQLite rolls back itself on a full disk: do not hide its error
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.execute("DETACH DATABASE backup")
    return manifest


def _open_adapter_files(folder: Path, versions: list[str]) -> dict[str, IO[bytes]]:
    """Open the files of `versions` now: an open file stays readable if a concurrent forget deletes it."""
    handles: dict[str, IO[bytes]] = {}
    for version in versions:
        for kind in ("gguf", "peft"):
            name = f"{version}.{kind}.enc"
            with contextlib.suppress(FileNotFoundError):
                handles[name] = (folder / name).open("rb")
    return handles


def _add(tar: tarfile.TarFile, name: str, source: IO[bytes], size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, int(time.time())
    tar.addfile(info, source)


def write_backup(vault: Vault, folder: Path, target: Path, passphrase: str) -> BackupReport:
    """Write the whole backup to `target` atomically (a reader sees the old file or the new one)."""
    resolved, live = target.resolve(), vault.path.resolve()
    if resolved.parent == folder.resolve() or resolved in database_files(live):
        raise UsageError(f"{target} is one of the files the backup copies: write it elsewhere")
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=vault.path.parent) as scratch:
        for attempt in range(ATTEMPTS):
            copy = Path(scratch) / f"vault-{attempt}.db"
            manifest = _snapshot(vault, folder, copy, passphrase)
            handles = _open_adapter_files(folder, manifest["versions"])
            missing = [f"{v}.{k}.enc" for v in manifest["versions"] for k in ("gguf", "peft")
                       if f"{v}.{k}.enc" not in handles]
            if not missing or attempt == ATTEMPTS - 1:
                break
            for handle in handles.values():  # retired while we looked: take a newer snapshot
                handle.close()
        try:
            with atomic_path(target) as partial, open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                                              0o600), "wb") as out:
                sealer = _SealingWriter(out, passphrase)
                with tarfile.open(fileobj=cast(IO[bytes], sealer), mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    body = json.dumps({**manifest, "missing": missing}, indent=1).encode()
                    _add(tar, "manifest.json", io.BytesIO(body), len(body))
                    with copy.open("rb") as db:
                        _add(tar, "vault.db", db, copy.stat().st_size)
                    for name, handle in sorted(handles.items()):
                        _add(tar, f"adapters/{name}", handle, os.fstat(handle.fileno()).st_size)
                sealer.finish()
                out.flush()
                os.fsync(out.fileno())
        finally:
            for handle in handles.values():
                handle.close()
    return BackupReport(str(target), target.stat().st_size, manifest["documents"], manifest["facts"],
                        manifest["versions"], manifest["active"], missing)


# -- restore -------------------------------------------------------------------------------------------------------
def check_restore(source: Path, paths: Paths, *, force: bool) -> None:
    """Refuse early (before a passphrase is asked for): no such file, or a home that already holds a vault."""
    if not source.is_file():
        raise BackupError(f"no backup file at {source}")
    if not force and (paths.vault.exists() or (paths.adapters.is_dir() and any(paths.adapters.iterdir()))):
        raise UsageError(f"{paths.home} already holds a vault: restoring would replace it (add --force to do so)")


def _unpack(reader: _OpeningReader, staging: Path) -> dict[str, Any]:
    """Write the archive's known members into `staging`; anything else in it is refused."""
    manifest: dict[str, Any] | None = None
    (staging / "adapters").mkdir(mode=0o700)
    try:
        with tarfile.open(fileobj=cast(IO[bytes], reader), mode="r|") as tar:
            for member in tar:
                name = member.name
                if not member.isreg() or not (name in ("manifest.json", "vault.db") or (
                        name.startswith("adapters/") and ADAPTER_FILE.fullmatch(name[len("adapters/"):]))):
                    raise BackupError(f"{reader.name} holds an unexpected entry {name!r}")
                data = tar.extractfile(member)
                assert data is not None  # a regular file always has one
                if name == "manifest.json":
                    manifest = json.loads(data.read())
                    continue
                fd = os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with open(fd, "wb") as out:
                    shutil.copyfileobj(data, out)
                    out.flush()
                    os.fsync(out.fileno())
        reader.verify_to_end()
    except tarfile.TarError as exc:  # cannot happen to an authenticated file that pllm wrote, but say so if it does
        raise BackupError(f"{reader.name} is not a pllm backup archive: {exc}") from None
    if manifest is None or not (staging / "vault.db").is_file():
        raise BackupError(f"{reader.name} lacks its manifest or its vault")
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{reader.name} is in format {manifest.get('format')!r}: restore it with a newer pllm")
    return manifest


def _swap_in(staging: Path, paths: Paths) -> None:
    """Move the old vault and adapters aside into `staging`, and the new ones into place; the vault's rename is the
    commit point (a crash before it leaves the old vault, whose adapters a rerun of `restore --force` brings back)."""
    old = staging / "replaced"
    old.mkdir()
    if paths.adapters.exists():
        os.rename(paths.adapters, old / "adapters")
    os.rename(staging / "adapters", paths.adapters)
    for stale in database_files(paths.vault)[1:]:  # an old WAL must never be replayed onto the new file
        if stale.exists():
            os.rename(stale, old / stale.name)
    os.replace(staging / "vault.db", paths.vault)


def restore_backup(source: Path, paths: Paths, passphrase: str, *, force: bool) -> RestoreReport:
    """Bring back the vault and adapters of `source` into `paths.home`, all or nothing."""
    check_restore(source, paths, force=force)
    created = not paths.home.exists()
    with source.open("rb") as raw:
        reader = _OpeningReader(raw, passphrase, source.name)  # a wrong passphrase fails here, before any write
        paths.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=paths.home))
        try:
            manifest = _unpack(reader, staging)
            with open_vault(staging / "vault.db", passphrase) as vault:  # it opens, migrates, and its adapter decrypts
                store = AdapterStore(vault, staging / "adapters")
                active = store.active()
                if active is not None:
                    store.gguf(active)
                versions = [v.version for v in store.versions() if v.status != "retired"]
                report = RestoreReport(str(paths.home), float(manifest["created_at"]), vault.count("documents"),
                                       vault.count("profile_facts"), versions, active)
            _swap_in(staging, paths)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if created:  # leave no trace of a home that did not exist
                with contextlib.suppress(OSError):
                    paths.home.rmdir()
            raise
    shutil.rmtree(staging, ignore_errors=True)
    return report
