"""The adapter store: versions of the user's LoRA adapter, encrypted at rest, promoted atomically.

Files live under $PLLM_HOME/adapters/, each AES-256-GCM encrypted with a random data key that is kept inside the
vault (so it is protected by the vault passphrase and survives a rekey). Version records and the stack of promoted
versions live in the vault too, so `promote` and `rollback` are one vault transaction each: a crash at any moment
leaves either the old or the new adapter active, never a half state. Decrypted adapters go to llama.cpp through an
in-memory file, never to disk, unless the user asks for an export.

    store = AdapterStore(vault, settings.paths.adapters)
    store.save(version_bytes...) ; store.promote("v0002") ; store.active() ; store.rollback()
"""

from __future__ import annotations

import errno
import hashlib
import json
import secrets
from pathlib import Path
from typing import Any

from pllm.errors import AdapterError, DiskFullError, UsageError
from pllm.files import atomic_write
from pllm.lm.export import merge_lora_gguf
from pllm.personal.records import AdapterRecords, AdapterVersion
from pllm.personal.vault import Vault

MAGIC = b"PLLMAES1"
KEY_META = "adapter_data_key"
STACK_META = "adapter_stack"


class MergeUnsupportedError(AdapterError):
    """The model's weights are not of a type an adapter can be folded into (it is then applied unmerged)."""


class AdapterNotFoundError(UsageError):
    """No adapter version by that name."""

    http_status = 404


class NothingToRollBackError(UsageError):
    """Rollback asked for with no adapter active."""

    http_status = 409


class AdapterStore:
    def __init__(self, vault: Vault, folder: Path) -> None:
        self.vault = vault
        self.folder = folder
        self.records = AdapterRecords(vault)

    # -- encryption ------------------------------------------------------------------------------------------
    def _key(self) -> bytes:
        hexkey = self.vault.get_meta(KEY_META)
        if not hexkey:
            hexkey = secrets.token_bytes(32).hex()
            self.vault.set_meta(KEY_META, hexkey)
        return bytes.fromhex(hexkey)

    def encrypt(self, data: bytes, label: str) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(12)
        return MAGIC + nonce + AESGCM(self._key()).encrypt(nonce, data, label.encode())

    def decrypt(self, blob: bytes, label: str) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not blob.startswith(MAGIC):
            raise AdapterError(f"{label}: not a pllm encrypted file")
        try:
            return AESGCM(self._key()).decrypt(blob[8:20], blob[20:], label.encode())
        except InvalidTag:
            raise AdapterError(f"{label}: the file is damaged or was not written for this vault") from None

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.enc"

    def write_file(self, name: str, data: bytes) -> None:
        """Encrypt and write whole (an adapter, the trainer's checkpoint); a full disk leaves the old file, if any,
        and raises DiskFullError."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            atomic_write(self._path(name), self.encrypt(data, name))
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise DiskFullError(self.folder) from exc

    def read_file(self, name: str) -> bytes | None:
        path = self._path(name)
        return self.decrypt(path.read_bytes(), name) if path.is_file() else None

    def has_file(self, name: str) -> bool:
        return self._path(name).is_file()

    def delete_file(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def delete_files(self, pattern: str, keep: str = "") -> None:
        """Delete the files whose names match `pattern`* (a glob), except those starting with `keep`."""
        for path in self.folder.glob(f"{pattern}*.enc"):
            if not (keep and path.name.startswith(keep)):
                path.unlink(missing_ok=True)

    # -- versions --------------------------------------------------------------------------------------------
    def next_version(self) -> str:
        latest = self.records.latest_version()
        return f"v{(int(latest[1:]) if latest else 0) + 1:04d}"

    def save(self, *, gguf: bytes, peft: bytes, base_model: str, lora: dict[str, Any], stats: dict[str, Any],
             trained_on: list[str] | None = None) -> str:
        """Store a new candidate version (files first, then the record: a crash leaves no record without files).

        `trained_on`: content hashes of the vault items in its training data, so forgetting one retires it.
        """
        version = self.next_version()
        self.write_file(f"{version}.gguf", gguf)
        self.write_file(f"{version}.peft", peft)
        self.records.insert(version, gguf=gguf, base_model=base_model, lora=lora, stats=stats, trained_on=trained_on)
        return version

    def retire_trained_on(self, hashes: frozenset[str]) -> list[str]:
        """Retire every version that trained on one of `hashes` (or whose data is unrecorded): it leaves the
        active stack and its files are deleted. Returns the versions retired."""
        touched = [v for v, on in self.records.live_trained_on() if on is None or hashes & set(on)]
        if not touched:
            return []
        with self.vault.transaction() as tx:
            self.vault.set_meta(STACK_META, json.dumps([v for v in self.stack() if v not in touched]))
            self.records.retire(tx, touched)
        for version in touched:  # after the commit: a crash in between leaves files of a retired version, not the
            self.delete_file(f"{version}.gguf")  # other way round, and the next forget deletes them again
            self.delete_file(f"{version}.peft")
            self.delete_files(f"{version}.merged-")
        return touched

    def stack(self) -> list[str]:
        return json.loads(self.vault.get_meta(STACK_META, "[]"))

    def active(self) -> str | None:
        stack = self.stack()
        return stack[-1] if stack else None

    def versions(self) -> list[AdapterVersion]:
        return self.records.rows(active=self.active())

    def get(self, version: str) -> AdapterVersion:
        for v in self.versions():
            if v.version == version:
                return v
        raise AdapterNotFoundError(f"no adapter version {version!r} (see `pllm adapters list`)")

    def set_status(self, version: str, status: str) -> None:
        self.records.set_status(version, status)

    def promote(self, version: str) -> None:
        """Make `version` the active adapter, in one transaction."""
        self.get(version)
        if not self.has_file(f"{version}.gguf"):
            raise AdapterError(f"the files of {version} are missing from {self.folder}")
        stack = [v for v in self.stack() if v != version] + [version]
        with self.vault.transaction() as tx:  # both changes, or neither
            self.vault.set_meta(STACK_META, json.dumps(stack))
            tx.execute("UPDATE adapters SET status = 'promoted' WHERE version = ?", (version,))

    def rollback(self) -> str | None:
        """Go back to the adapter promoted before the active one (None: the base model alone)."""
        stack = self.stack()
        if not stack:
            raise NothingToRollBackError("no adapter is active: nothing to roll back")
        self.vault.set_meta(STACK_META, json.dumps(stack[:-1]))
        return stack[-2] if len(stack) > 1 else None

    def gguf(self, version: str) -> bytes:
        record = self.get(version)
        data = self.read_file(f"{version}.gguf")
        if data is None:
            raise AdapterError(f"the files of {version} are missing from {self.folder}")
        if hashlib.sha256(data).hexdigest() != record.gguf_sha256:
            raise AdapterError(f"{version} does not match its record: the file was replaced")
        return data

    def merged_model(self, version: str, base: Path) -> bytes:
        """The GGUF of `base` with `version` folded into its weights: built once per base file (a few seconds) and
        kept encrypted like the adapter; its name carries the base's size, so another base builds its own.
        MergeUnsupportedError where the base's adapted weights are in no format gguf can round back into (K-quants,
        IQ4_NL): such a version is applied unmerged."""
        name = f"{version}.merged-{base.stat().st_size}.gguf"
        data = self.read_file(name)
        if data is None:
            try:
                data = merge_lora_gguf(base, self.gguf(version))
            except ValueError as exc:
                raise MergeUnsupportedError(f"{version} cannot be merged into {base.name}: {exc}") from None
            self.write_file(name, data)
            self.delete_files("*.merged-", keep=f"{version}.")  # one merge on disk: the others rebuild on demand
        return data

    def peft_state(self, version: str) -> dict[str, Any]:
        from safetensors.torch import load

        data = self.read_file(f"{version}.peft")
        if data is None:
            raise AdapterError(f"the files of {version} are missing from {self.folder}")
        return load(data)

    def export(self, version: str, folder: Path, fmt: str) -> list[Path]:
        """Decrypted copies for other tools, on the user's explicit request."""
        record = self.get(version)
        folder.mkdir(parents=True, exist_ok=True)
        if fmt == "gguf":
            path = folder / f"pllm-{version}.gguf"
            atomic_write(path, self.gguf(version))
            return [path]
        if fmt == "peft":
            from safetensors.torch import save_file

            # get_peft_model_state_dict's names are what PeftModel.from_pretrained reads back.
            save_file(self.peft_state(version), str(folder / "adapter_model.safetensors"))
            lora = record.lora
            config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": lora["r"], "lora_alpha": lora["alpha"],
                      "lora_dropout": 0.0, "target_modules": list(lora["target_modules"]), "bias": "none",
                      "base_model_name_or_path": record.base_model, "inference_mode": True}
            (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
            return [folder / "adapter_model.safetensors", folder / "adapter_config.json"]
        raise UsageError(f"unknown export format {fmt!r}; use peft or gguf")


class EncryptedStorage:
    """The trainer's checkpoint storage, encrypted with the adapter key (see lm.train.Storage)."""

    def __init__(self, store: AdapterStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix

    def read(self, name: str) -> bytes | None:
        return self.store.read_file(f"{self.prefix}.{name}")

    def write(self, name: str, data: bytes) -> None:
        self.store.write_file(f"{self.prefix}.{name}", data)

    def delete(self, name: str) -> None:
        self.store.delete_file(f"{self.prefix}.{name}")

    def exists(self, name: str) -> bool:
        return self.store.has_file(f"{self.prefix}.{name}")


def activate(runtime: Any, vault: Vault, folder: Path) -> str | None:
    """Load the user's active adapter (decrypted in memory) into `runtime` and apply it; None if there is none."""
    store = AdapterStore(vault, folder)
    version = store.active()
    if version is not None:
        runtime.load_adapter(version, store.gguf(version))
        runtime.set_adapters({version: 1.0})
    return version
