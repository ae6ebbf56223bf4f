"""The adapter store: encrypted at rest, tamper-evident, promoted and rolled back atomically, exported on request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pllm.errors import AdapterError, UsageError
from pllm.personal.adapters import AdapterStore
from pllm.personal.vault import Vault, create_vault, open_vault

GGUF = b"GGUF\x03\x00\x00\x00" + b"pretend adapter tensors " * 100


def peft_bytes() -> bytes:
    from safetensors.torch import save

    return save({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.ones(8, 576),
                 "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(576, 8)})


@pytest.fixture
def vault(pllm_home: Path) -> Vault:
    v = create_vault(pllm_home / "vault.db", "s3cret")
    yield v
    v.close()


def save(store: AdapterStore, n: int = 1) -> str:
    return store.save(gguf=GGUF + bytes([n]), peft=peft_bytes(), base_model="SmolLM2",
                      lora={"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj"]}, stats={"steps": n})


def test_files_on_disk_are_neither_gguf_nor_safetensors(vault: Vault, pllm_home: Path) -> None:
    store = AdapterStore(vault, pllm_home / "adapters")
    version = save(store)
    for path in (pllm_home / "adapters").iterdir():
        raw = path.read_bytes()
        assert raw.startswith(b"PLLMAES1")
        assert b"GGUF" not in raw and b"pretend adapter" not in raw and b"lora_A" not in raw
        with pytest.raises(Exception):  # noqa: B017 - any refusal will do: it must not parse
            json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert store.gguf(version) == GGUF + b"\x01"


def test_tampering_is_detected(vault: Vault, pllm_home: Path) -> None:
    store = AdapterStore(vault, pllm_home / "adapters")
    version = save(store)
    path = pllm_home / "adapters" / f"{version}.gguf.enc"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(AdapterError, match="damaged"):
        store.gguf(version)


def test_promote_and_rollback(vault: Vault, pllm_home: Path) -> None:
    store = AdapterStore(vault, pllm_home / "adapters")
    one, two = save(store, 1), save(store, 2)
    assert (one, two, store.active()) == ("v0001", "v0002", None)
    store.promote(one)
    store.promote(two)
    assert store.active() == two and [v.active for v in store.versions()] == [False, True]
    assert store.rollback() == one and store.active() == one
    assert store.rollback() is None and store.active() is None
    with pytest.raises(UsageError, match="nothing to roll back"):
        store.rollback()
    with pytest.raises(UsageError, match="no adapter version 'v0009'"):
        store.promote("v0009")


def test_the_key_lives_in_the_vault_and_survives_a_rekey(vault: Vault, pllm_home: Path) -> None:
    version = save(AdapterStore(vault, pllm_home / "adapters"))
    vault.rekey("n3w")
    vault.close()
    again = open_vault(pllm_home / "vault.db", "n3w")
    assert AdapterStore(again, pllm_home / "adapters").gguf(version) == GGUF + b"\x01"
    again.close()


def test_export_writes_decrypted_files(vault: Vault, pllm_home: Path, tmp_path: Path) -> None:
    store = AdapterStore(vault, pllm_home / "adapters")
    version = save(store)
    (gguf,) = store.export(version, tmp_path / "gguf", "gguf")
    assert gguf.read_bytes().startswith(b"GGUF")
    files = store.export(version, tmp_path / "peft", "peft")
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8
    from safetensors.torch import load_file

    assert set(load_file(str(files[0]))) == {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                                             "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"}
    with pytest.raises(UsageError, match="unknown export format"):
        store.export(version, tmp_path, "onnx")
