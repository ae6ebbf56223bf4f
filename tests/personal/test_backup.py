"""`pllm backup` / `pllm restore` on the real vault, real encrypted adapters and the real model: a restored home
answers as the original did; a wrong passphrase, a flipped byte or a cut file restore nothing; a backup taken while
another process writes the vault is consistent; no plaintext reaches the backup."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pllm.config import Paths
from pllm.personal.adapters import AdapterStore
from pllm.personal.backup import CHUNK, HEADER, TAG, BackupError, restore_backup, write_backup
from pllm.personal.vault import open_vault

Run = Callable[..., subprocess.CompletedProcess[str]]
PASSPHRASE = "s3cret"
PASS = {"PLLM_PASSPHRASE": PASSPHRASE}
CANARY = "CANARY-" + secrets.token_hex(8)
QUESTION = ("ask", "What is my cat called?", "--json", "-n", "24")


@pytest.fixture
def home(pllm: Run, pllm_home: Path, tmp_path: Path, random_lora: Callable[..., Path]) -> Path:
    """A home with a note, two real (random) LoRA versions, v0002 promoted then v0001: the active one is not the
    latest, and rolling back goes to v0002."""
    note = tmp_path / "in" / "note.md"
    note.parent.mkdir()
    note.write_text(f"My cat is called Pixel and I live in Tromso. My locker code is {CANARY}.\n")
    for args in (("init", "--name", "Mara"), ("ingest", str(note))):
        proc = pllm(*args, env=PASS)
        assert proc.returncode == 0, proc.stderr
    with open_vault(pllm_home / "vault.db", PASSPHRASE) as vault:
        store = AdapterStore(vault, pllm_home / "adapters")
        for seed in (1, 2):
            store.save(gguf=random_lora(seed).read_bytes(), peft=b"peft state %d" % seed, base_model="SmolLM2",
                       lora={"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]}, stats={"seed": seed})
        store.promote("v0002")
        store.promote("v0001")
    return pllm_home


def backup_of(home: Path, target: Path) -> Path:
    with open_vault(home / "vault.db", PASSPHRASE) as vault:
        write_backup(vault, home / "adapters", target, PASSPHRASE)
    return target


def snapshot(home: Path) -> dict[str, object]:
    """What a home holds, decrypted: documents, facts, the stack, each live version's adapter bytes."""
    with open_vault(home / "vault.db", PASSPHRASE) as vault:
        store = AdapterStore(vault, home / "adapters")
        return {"documents": [(d.source, d.content) for d in vault.documents()],
                "facts": [(f.subject, f.key, f.value) for f in vault.facts()], "stack": store.stack(),
                "adapters": {v.version: hashlib.sha256(store.gguf(v.version)).hexdigest() for v in store.versions()},
                "peft": {v.version: store.read_file(f"{v.version}.peft") for v in store.versions()}}


def one_line_error(proc: subprocess.CompletedProcess[str], start: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {start}") and proc.stderr.count("\n") == 1, proc.stderr


def test_a_restored_home_answers_as_the_original(pllm: Run, home: Path, tmp_path: Path) -> None:
    target = tmp_path / "pllm.backup"
    made = pllm("backup", str(target), "--json", env=PASS)
    assert made.returncode == 0, made.stderr
    report = json.loads(made.stdout)
    assert (report["versions"], report["active"], report["documents"]) == (["v0001", "v0002"], "v0001", 1)
    other = tmp_path / "elsewhere" / "home"  # a fresh home: nothing there, not even the folder
    there = {**PASS, "PLLM_HOME": str(other)}
    restored = pllm("restore", str(target), env=there)
    assert restored.returncode == 0, restored.stderr
    assert "restored 1 documents" in restored.stdout and "active: v0001" in restored.stdout
    assert snapshot(other) == snapshot(home)
    assert snapshot(other)["stack"] == ["v0002", "v0001"]
    for name in ("v0001.gguf.enc", "v0002.gguf.enc", "v0002.peft.enc"):  # stored as they were, and still usable
        assert (other / "adapters" / name).read_bytes() == (home / "adapters" / name).read_bytes()
    original, copy = pllm(*QUESTION, env=PASS), pllm(*QUESTION, env=there)
    assert original.returncode == 0 and copy.returncode == 0, original.stderr + copy.stderr
    original_answer, copy_answer = json.loads(original.stdout), json.loads(copy.stdout)
    assert copy_answer["adapter"] == original_answer["adapter"] == "v0001"
    assert copy_answer["text"] == original_answer["text"] and copy_answer["text"].strip()  # greedy: same answer


def test_a_wrong_passphrase_restores_nothing(pllm: Run, home: Path, tmp_path: Path) -> None:
    target = backup_of(home, tmp_path / "pllm.backup")
    fresh = tmp_path / "fresh"
    proc = pllm("restore", str(target), env={"PLLM_PASSPHRASE": "wrong", "PLLM_HOME": str(fresh)})
    one_line_error(proc, "wrong passphrase for pllm.backup")
    assert not fresh.exists()
    before = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    proc = pllm("restore", str(target), "--force", env={"PLLM_PASSPHRASE": "wrong"})  # over a home: untouched
    one_line_error(proc, "wrong passphrase for pllm.backup")
    assert {p: p.read_bytes() for p in home.rglob("*") if p.is_file()} == before


def test_a_flipped_byte_is_refused_in_one_line(pllm: Run, home: Path, tmp_path: Path) -> None:
    target = backup_of(home, tmp_path / "pllm.backup")
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    target.write_bytes(bytes(raw))
    fresh = tmp_path / "fresh"
    proc = pllm("restore", str(target), env={**PASS, "PLLM_HOME": str(fresh)})
    one_line_error(proc, "pllm.backup is damaged or was tampered with")
    assert not fresh.exists()


DAMAGE = {  # what is done to the file -> what the refusal says
    "last byte": (lambda raw: raw[:-1] + bytes([raw[-1] ^ 0x80]), "damaged"),
    "cut by one": (lambda raw: raw[:-1], "damaged"),
    # every chunk left authenticates, but the last one left was not sealed as the last
    "cut at a chunk": (lambda raw: raw[: HEADER + CHUNK + TAG], "damaged"),
    "one byte more": (lambda raw: raw + b"\x00", "damaged"),
    "magic": (lambda raw: b"X" + raw[1:], "not a pllm backup"),
    "header": (lambda raw: raw[:20] + bytes([raw[20] ^ 1]) + raw[21:], "wrong passphrase"),  # the salt
}


def test_every_kind_of_damage_is_refused(home: Path, tmp_path: Path) -> None:
    raw = backup_of(home, tmp_path / "pllm.backup").read_bytes()
    assert len(raw) > HEADER + CHUNK + TAG  # a whole chunk and a last one
    fresh = Paths(home=tmp_path / "fresh", cache=tmp_path / "cache")
    for name, (damage, refusal) in DAMAGE.items():
        bad = tmp_path / f"{name}.backup"
        bad.write_bytes(damage(raw))
        with pytest.raises(BackupError, match=refusal):
            restore_backup(bad, fresh, PASSPHRASE, force=False)
        assert not fresh.home.exists(), name


def test_restore_over_a_vault_needs_force(pllm: Run, home: Path, tmp_path: Path) -> None:
    target = backup_of(home, tmp_path / "pllm.backup")
    before = snapshot(home)
    assert pllm("adapters", "rollback", env=PASS).returncode == 0  # the home moves on: v0002 is active
    later = tmp_path / "later.md"
    later.write_text("My dog is called Rex.\n")
    assert pllm("ingest", str(later), env=PASS).returncode == 0
    refused = pllm("restore", str(target), env=PASS)
    one_line_error(refused, f"{home} already holds a vault: restoring would replace it (add --force")
    forced = pllm("restore", str(target), "--force", env=PASS)
    assert forced.returncode == 0, forced.stderr
    assert snapshot(home) == before and before["stack"] == ["v0002", "v0001"]
    assert sorted(p.name for p in home.iterdir()) == ["adapters", "vault.db"]  # no staging folder left behind


WRITER = """
import sys, time
from pathlib import Path
from pllm.personal.vault import open_vault

vault = open_vault(Path(sys.argv[1]), sys.argv[2])
i = 0
while True:  # two documents per transaction: a consistent copy holds an even number of them
    vault.add_documents([("w", "txt", f"written {i} a", time.time()), ("w", "txt", f"written {i} b", time.time())])
    i += 1
    if i == 1:
        print("writing", flush=True)
    time.sleep(0.002)
"""


def test_a_backup_taken_while_another_process_writes_is_consistent(home: Path, tmp_path: Path) -> None:
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(home / "vault.db"), PASSPHRASE],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
        targets = []
        for n in range(3):
            targets.append(backup_of(home, tmp_path / f"b{n}.backup"))
            time.sleep(0.2)
    finally:
        writer.terminate()
        writer.wait(timeout=30)
    counts = []
    for n, target in enumerate(targets):
        paths = Paths(home=tmp_path / f"restored{n}", cache=tmp_path / "cache")
        report = restore_backup(target, paths, PASSPHRASE, force=False)
        with open_vault(paths.vault, PASSPHRASE) as vault:
            assert vault.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            written = vault.conn.execute("SELECT count(*) FROM documents WHERE source = 'w'").fetchone()[0]
        assert written % 2 == 0 and report.documents == written + 1 and report.active == "v0001"
        counts.append(written)
    assert 0 < counts[0] < counts[-1]  # the writer was writing all along


def test_no_plaintext_reaches_the_backup_or_the_disk(pllm: Run, home: Path, tmp_path: Path,
                                                     tmp_path_factory: pytest.TempPathFactory,
                                                     files_holding: Callable[..., list[Path]]) -> None:
    started = time.time() - 1
    target = tmp_path / "out" / "pllm.backup"
    made = pllm("backup", str(target), env=PASS)
    assert made.returncode == 0, made.stderr
    assert "backed up 1 documents" in made.stdout and "2 adapter versions (active: v0001)" in made.stdout
    raw = target.read_bytes()
    assert CANARY.encode() not in raw and b"Pixel" not in raw and b"GGUF" not in raw and b"vault.db" not in raw
    # not a leak: the user's own input note (this test's or another's, written just before: the same canary)
    inputs = tmp_path_factory.getbasetemp()
    leaks = [path for path in files_holding(CANARY.encode(), home, target.parent, Path(tempfile.gettempdir()),
                                            since=started)
             if not (path.is_relative_to(inputs) and path.parent.name == "in" and path.name == "note.md")]
    assert leaks == []
    assert target.stat().st_mode & 0o777 == 0o600
    restored = tmp_path / "restored"
    assert pllm("restore", str(target), env={**PASS, "PLLM_HOME": str(restored)}).returncode == 0
    exported = pllm("profile", "export", env={**PASS, "PLLM_HOME": str(restored)})
    assert CANARY in exported.stdout  # it was in the backup, sealed
