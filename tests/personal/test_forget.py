"""Forgetting reaches the adapters: versions that trained on a forgotten item are retired and their files deleted,
an interrupted run holding one is destroyed; queries are literal text unless --like."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pllm.config import Settings
from pllm.personal.adapt import JOB, TrainingSet, collect
from pllm.personal.adapters import AdapterStore, EncryptedStorage
from pllm.personal.forget import forget_everywhere
from pllm.personal.migrations import MIGRATIONS
from pllm.personal.profile import learn_facts
from pllm.personal.vault import Vault, content_hash, create_vault, fact_hash


@pytest.fixture
def vault(pllm_home: Path) -> Vault:
    v = create_vault(pllm_home / "vault.db", "s3cret")
    yield v
    v.close()


def save(store: AdapterStore, trained_on: list[str] | None) -> str:
    return store.save(gguf=b"GGUF" + json.dumps(trained_on).encode(), peft=b"peft", base_model="m", lora={"r": 8},
                      stats={}, trained_on=trained_on)


def test_a_query_is_literal_text_unless_like(vault: Vault) -> None:
    for text in ("snake_case names", "plain words", "100% sure", "pain"):
        vault.add_document(source="n", kind="txt", content=text)
    assert vault.forget(query="_").documents == 1
    assert vault.forget(query="%").documents == 1
    assert sorted(d.content for d in vault.documents()) == ["pain", "plain words"]
    assert vault.forget(query="p_in", like=True).documents == 1  # the pattern, by request
    assert [d.content for d in vault.documents()] == ["plain words"]


def test_training_sets_know_their_vault_items(vault: Vault) -> None:
    vault.add_document(source="n", kind="txt", content="Sailing every Sunday.")
    learn_facts(vault, "My boat is called Seabird.", source="user")
    sources = collect(vault).sources
    assert content_hash("Sailing every Sunday.") in sources and fact_hash("boat name", "Seabird") in sources


def test_versions_that_trained_on_a_forgotten_item_are_retired(vault: Vault, pllm_home: Path) -> None:
    vault.add_document(source="n", kind="txt", content="My locker code is 4471.")
    vault.add_document(source="n", kind="txt", content="I like tea.")
    store = AdapterStore(vault, pllm_home / "adapters")
    with_code = save(store, [content_hash("My locker code is 4471.")])
    without = save(store, [content_hash("I like tea.")])
    unrecorded = save(store, None)  # trained before provenance was recorded: it may hold the code
    for version in (without, unrecorded, with_code):
        store.promote(version)
    outcome = forget_everywhere(Settings(), vault, query="4471", retrain=False)
    assert outcome.vault.documents == 1 and sorted(outcome.retired) == sorted([with_code, unrecorded])
    assert store.active() == without and store.stack() == [without]
    for version in (with_code, unrecorded):
        assert store.get(version).status == "retired"
        assert not store.has_file(f"{version}.gguf") and not store.has_file(f"{version}.peft")
    assert store.has_file(f"{without}.gguf")
    assert outcome.retrain_skipped == "--no-retrain"
    assert forget_everywhere(Settings(), vault, query="tea", retrain=False).retired == [without]


def test_an_interrupted_run_holding_a_forgotten_item_is_destroyed(vault: Vault, pllm_home: Path) -> None:
    vault.add_document(source="n", kind="txt", content="My locker code is 4471.")
    vault.add_document(source="n", kind="txt", content="I like tea.")
    store = AdapterStore(vault, pllm_home / "adapters")
    job = EncryptedStorage(store, JOB)
    job.write("data", collect(vault).to_bytes())
    job.write("checkpoint", b"weights")
    outcome = forget_everywhere(Settings(), vault, query="nothing matches", retrain=False)
    assert not outcome.discarded_pending_run and job.exists("data")
    outcome = forget_everywhere(Settings(), vault, query="4471", retrain=False)
    assert outcome.discarded_pending_run and not job.exists("data") and not job.exists("checkpoint")
    assert TrainingSet.from_bytes(collect(vault).to_bytes()).sources == [content_hash("I like tea.")]


def test_the_provenance_migration_keeps_older_versions(tmp_path: Path) -> None:
    import sqlcipher3

    conn = sqlcipher3.connect(str(tmp_path / "old.db"), isolation_level=None)
    conn.execute("PRAGMA key = 'k'")
    steps = dict(MIGRATIONS)
    steps["m003_adapters"](conn)
    conn.execute("INSERT INTO adapters VALUES ('v0001', 1.0, 'promoted', 'm', '{}', '{}', 'abc')")
    steps["m004_adapter_provenance"](conn)
    steps["m004_adapter_provenance"](conn)  # safe to re-run
    assert conn.execute("SELECT version, status, trained_on FROM adapters").fetchall() == [("v0001", "promoted", None)]
    conn.execute("UPDATE adapters SET status = 'retired'")  # the new status is allowed
