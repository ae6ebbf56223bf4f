"""Safe under faults: `kill -9` and a full disk in the middle of the commands that write, through the real `pllm`
script, the real vault and the real packaged model.

Afterwards the vault opens with the right passphrase (after a killed rekey: the old one or the new one, exactly one),
`PRAGMA integrity_check` is ok, every file ingested is there whole or not at all, the active adapter still serves,
and the next run completes what was missing. A full disk ends a command with one `error:` line and exit code 2.
kill -9 during `pllm adapt` is tests/personal/test_adapt_cli.py's.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from pllm.config import Settings
from pllm.errors import DiskFullError, WrongPassphraseError
from pllm.http_serving import free_port, start_server
from pllm.personal.adapters import AdapterStore
from pllm.personal.forget import forget_everywhere
from pllm.personal.ingest import parse_file
from pllm.personal.vault import Vault, create_vault, open_vault
from pllm.processes import stop_process

Run = Callable[..., subprocess.CompletedProcess[str]]
PASSPHRASE = "s3cret"
PASS = {"PLLM_PASSPHRASE": PASSPHRASE}
NOTE = ("My boat is called Seabird.\n\nMy sister is called Ingrid.\n\n"
        "On Sundays I sail to Skjervoy with Ingrid and we cook fish soup.\n")
PLLM = str(Path(sys.executable).with_name("pllm"))


# -- helpers ---------------------------------------------------------------------------------------------------------
def write_notes(folder: Path, n: int = 300) -> list[Path]:
    """`n` small text files of two paragraphs each (two documents a file), every one different."""
    folder.mkdir(parents=True)
    files = []
    for i in range(n):
        path = folder / f"note-{i:03d}.txt"
        path.write_text(f"Day {i}: I walked the dog number {i} along the harbour and counted {i * 7} boats. " * 4
                        + f"\n\nLater on day {i} I cooked soup number {i} with leeks and wrote a letter to Ingrid.\n")
        files.append(path)
    return files


def check_vault(path: Path, passphrase: str = PASSPHRASE) -> Vault:
    """The vault opens with `passphrase` and SQLite finds nothing wrong in it (the caller closes it)."""
    vault = open_vault(path, passphrase)
    assert vault.conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    return vault


def whole_files(vault: Vault, files: list[Path]) -> tuple[set[Path], int]:
    """The files whose every passage is in the vault, and how many passages the others lack. Fails on a file that
    is there in part, on a passage that is not one of its file's (cut short), and on a passage stored twice."""
    stored: dict[str, list[str]] = {}
    for doc in vault.documents():
        stored.setdefault(doc.source, []).append(doc.content)
    whole, missing = set(), 0
    for path in files:
        expected = sorted(r.content for r in parse_file(path))
        got = sorted(stored.get(str(path), []))
        assert got in ([], expected), f"{path.name} is there in part: {len(got)} of {len(expected)} passages"
        if got:
            whole.add(path)
        else:
            missing += len(expected)
    return whole, missing


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """A command that failed as a user should see it: exit code 2, its last stderr line the only `error:` one, and
    no traceback. Returns that line."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], proc.stderr[-2000:]
    return lines[-1]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """`small_disk(mb)`: a fresh tmpfs of that size, unmounted at the end. Skips where mounting is not allowed
    (not root, no `mount`, a container without CAP_SYS_ADMIN)."""
    mounted: list[Path] = []

    def mount(mb: int) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("a full disk is simulated with a tmpfs mount: needs root and `mount`")
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mb}m,mode=0700", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill `disk` with one file until only `leave` bytes are free; deleting it frees the space again."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        while (free := shutil.disk_usage(disk).free - leave) > 0:
            out.write(b"\0" * min(free, 1 << 20))
            out.flush()
    return filler


# -- kill -9 -----------------------------------------------------------------------------------------------------------
def test_kill_9_mid_ingest_keeps_whole_files_and_the_next_ingest_adds_the_rest(pllm: Run, pllm_home: Path,
                                                                              tmp_path: Path) -> None:
    files = write_notes(tmp_path / "notes")
    assert pllm("init", "--name", "Mara", env=PASS).returncode == 0
    proc = subprocess.Popen([PLLM, "ingest", str(tmp_path / "notes")], env={**os.environ, **PASS},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # piped, ingest reports each tenth: "ingest note-029.txt: 30/300"
            done = re.search(r": (\d+)/300$", line.strip())
            if done and int(done[1]) >= 30:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    with check_vault(pllm_home / "vault.db") as vault:
        whole, missing = whole_files(vault, files)
        before = vault.count("documents")
    assert 30 <= len(whole) < len(files), len(whole)  # killed midway
    again = pllm("ingest", str(tmp_path / "notes"), env=PASS)
    assert again.returncode == 0, again.stderr
    with check_vault(pllm_home / "vault.db") as vault:
        assert whole_files(vault, files) == (set(files), 0)
        assert vault.count("documents") == before + missing  # exactly what was missing, nothing twice


def test_kill_9_mid_rekey_leaves_exactly_one_passphrase_that_opens(pllm_home: Path) -> None:
    """SIGKILL at moments spread over a whole rekey (unlock, the export to the new file, the swap, the reopen): each
    time the old passphrase or the new one opens the vault, never both, never neither, and nothing is lost."""
    path = pllm_home / "vault.db"
    with create_vault(path, "p0", name="Mara") as vault:  # ~7 MB: the export takes a moment
        vault.add_documents([(f"diary-{i}.txt", "txt", f"Entry {i}: " + "we sailed past the lighthouse. " * 40,
                              1.7e9 + i) for i in range(5000)])
        sample = vault.documents()[1234]

    def rekey(old: str, new: str, kill_after: float | None) -> None:
        proc = subprocess.Popen([PLLM, "profile", "rekey"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PLLM_PASSPHRASE": old, "PLLM_NEW_PASSPHRASE": new})
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            assert proc.wait() in (0, -signal.SIGKILL)

    def opens(passphrase: str) -> bool:
        try:
            vault = check_vault(path, passphrase)
        except WrongPassphraseError:
            return False
        with vault:
            assert vault.count("documents") == 5000 and vault.documents()[1234] == sample
        return True

    started = time.monotonic()
    rekey("p0", "p1", None)  # once whole, to time it
    whole_s = time.monotonic() - started
    assert opens("p1") and not opens("p0")
    current, outcomes = "p1", []
    tries = 12
    for n in range(tries):  # the first ~0.3 of a run starts Python; the swap comes in the last tenth or two
        new = f"p{n + 2}"
        rekey(current, new, whole_s * (0.3 + 0.75 * (n + random.random()) / tries))
        kept, took = opens(current), opens(new)
        assert kept != took, f"try {n}: old opens {kept}, new opens {took}"
        outcomes.append("new" if took else "old")
        current = new if took else current
    rekey(current, "last", None)  # a rekey after the killed ones clears what they left
    assert opens("last") and not opens(current), outcomes
    assert sorted(p.name for p in pllm_home.iterdir()) == ["vault.db"]


def test_forgetting_removes_the_copy_a_killed_rekey_left(pllm_home: Path) -> None:
    """A rekey killed before its swap leaves a whole copy of the vault; what is forgotten must not live on in it."""
    vault = create_vault(pllm_home / "vault.db", "s3cret")
    vault.add_document(source="n", kind="note", content="My locker code is Quillfeather-19.")
    vault.close()
    shutil.copy(pllm_home / "vault.db", pllm_home / "vault.db.rekey")  # what the killed rekey's export left
    settings = Settings(home=pllm_home)
    with open_vault(pllm_home / "vault.db", "s3cret") as again:
        forget_everywhere(settings, again, query="Quillfeather", retrain=False)
    assert not (pllm_home / "vault.db.rekey").exists()


def test_kill_9_mid_stream_keeps_the_vault_and_the_active_adapter(pllm: Run, pllm_home: Path, tmp_path: Path,
                                                                   random_lora: Callable[..., Path]) -> None:
    with create_vault(pllm_home / "vault.db", PASSPHRASE, name="Mara") as vault:
        vault.add_document(source="note.md", kind="md", content=NOTE)
        store = AdapterStore(vault, pllm_home / "adapters")
        version = store.save(gguf=random_lora(seed=1).read_bytes(), peft=b"", base_model="SmolLM2",
                             lora={"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
                             stats={})
        store.promote(version)
    port = free_port()
    server = start_server([PLLM, "serve", "--port", str(port)], port, {**os.environ, **PASS},
                          tmp_path / "serve.log")
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        first = httpx.post(url, timeout=120, json={"model": "pllm", "max_tokens": 12, "messages": [
            {"role": "user", "content": "Say hello to me."}]}).json()["choices"][0]["message"]["content"]
        body = {"model": "pllm", "stream": True, "max_tokens": 1024, "temperature": 0,
                "messages": [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]}
        with httpx.stream("POST", url, json=body, timeout=120) as reply:
            events = reply.iter_lines()
            before = [e for e in (next(events) for _ in range(8)) if e]
            assert all(e.startswith("data: {") for e in before)  # the answer is under way
            os.kill(server.pid, signal.SIGKILL)
            with pytest.raises(httpx.HTTPError):  # the stream breaks off: no [DONE]
                for event in events:
                    assert event != "data: [DONE]"
        assert server.wait(timeout=30) == -signal.SIGKILL
    finally:
        stop_process(server, group=True)
    with check_vault(pllm_home / "vault.db") as vault:
        logged = [(i.prompt, i.answer, i.adapter_version) for i in vault.interactions()]
    assert logged[0] == ("Say hello to me.", first, version)  # what was answered before the kill, whole
    assert len(logged) == 1 or (len(logged) == 2 and logged[1][1])  # the killed answer: absent, or whole
    listed = json.loads(pllm("adapters", "list", "--json", env=PASS).stdout)
    assert [(v["version"], v["active"]) for v in listed] == [(version, True)]
    asked = pllm("ask", "Say hi.", "--json", "-n", "8", env=PASS)
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["adapter"] == version  # the active adapter loads and serves


# -- a full disk -----------------------------------------------------------------------------------------------------
def test_a_full_disk_mid_ingest_fails_in_one_line_and_keeps_what_was_committed(
        pllm: Run, small_disk: Callable[[int], Path], tmp_path: Path) -> None:
    disk = small_disk(32)
    env = {**PASS, "PLLM_HOME": str(disk / "home")}
    first = tmp_path / "first.md"
    first.write_text(NOTE)
    files = write_notes(tmp_path / "notes")
    assert pllm("init", "--name", "Mara", env=env).returncode == 0
    assert pllm("ingest", str(first), env=env).returncode == 0
    filler = fill(disk, leave=0)  # not even room for the WAL index: the vault cannot open, and says why
    assert one_error_line(pllm("profile", "show", env=env)).startswith("error: the disk holding ")
    assert one_error_line(pllm("profile", "show", env={**env, "PLLM_PASSPHRASE": "wrong"})) == \
        "error: wrong passphrase or not a pllm vault"
    filler.unlink()
    filler = fill(disk, leave=512 * 1024)
    full = pllm("ingest", str(tmp_path / "notes"), env=env)
    assert one_error_line(full).startswith("error: the disk holding ") and "is full" in full.stderr
    with check_vault(disk / "home" / "vault.db") as vault:
        assert whole_files(vault, [first]) == ({first}, 0)  # committed before the disk filled up: intact
        whole, missing = whole_files(vault, files)
        before = vault.count("documents")
    assert 0 < len(whole) < len(files), len(whole)  # ran out of space midway
    filler.unlink()
    again = pllm("ingest", str(tmp_path / "notes"), env=env)
    assert again.returncode == 0, again.stderr
    with check_vault(disk / "home" / "vault.db") as vault:
        assert whole_files(vault, [first, *files]) == ({first, *files}, 0)
        assert vault.count("documents") == before + missing


def test_a_full_disk_mid_transaction_rolls_back_and_the_connection_goes_on(small_disk: Callable[[int], Path]) -> None:
    """A transaction too big for the disk left fails as DiskFullError: SQLite has already rolled it back, so the
    vault must not hide that behind "cannot rollback"; `pllm serve` keeps one connection, which must work on once
    the space is back."""
    disk = small_disk(32)
    with create_vault(disk / "home" / "vault.db", PASSPHRASE, name="Mara") as vault:
        vault.add_document(source="note.md", kind="md", content=NOTE)
        filler = fill(disk, leave=256 * 1024)
        # ~10 MB: more than SQLite's page cache (8 MB), so it spills to the WAL mid-transaction, before the COMMIT
        rows = [("big.txt", "txt", f"Line {i}. " + "x" * 3000, 1.7e9 + i) for i in range(3200)]
        with pytest.raises(DiskFullError, match="is full: free some space"):
            vault.add_documents(rows)
        assert not vault.conn.in_transaction and vault.count("documents") == 1
        filler.unlink()
        assert vault.add_documents(rows) == (3200, 0)
    with check_vault(disk / "home" / "vault.db") as vault:
        assert vault.count("documents") == 3201


@pytest.mark.slow
def test_a_full_disk_mid_adapt_fails_in_one_line_and_the_next_run_trains(
        pllm: Run, small_disk: Callable[[int], Path], tmp_path: Path) -> None:
    """The disk fills up before the first checkpoint (~10 MB at step 5): one error line, no half version and no
    partial file left; with the space back, the next run picks up the same training data and promotes."""
    disk = small_disk(256)  # the adapter, its checkpoint and the merged copy of the model (~150 MB) fit when empty
    home = disk / "home"
    env = {**PASS, "PLLM_HOME": str(home)}
    note = tmp_path / "note.md"
    note.write_text(NOTE)
    assert pllm("init", "--name", "Mara", env=env).returncode == 0
    assert pllm("ingest", str(note), env=env).returncode == 0
    filler = fill(disk, leave=2 << 20)  # the run's data snapshot (~12 kB) fits, its checkpoint does not
    full = pllm("adapt", env=env, timeout=600)
    assert one_error_line(full).startswith("error: the disk holding ") and "adapt: step 5/" in full.stderr
    with check_vault(home / "vault.db") as vault:
        assert whole_files(vault, [note]) == ({note}, 0)
        assert AdapterStore(vault, home / "adapters").versions() == []
    assert not [p.name for p in (home / "adapters").iterdir() if not p.name.startswith("job.")]  # no partial file
    filler.unlink()
    again = pllm("adapt", "--json", env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "resuming the interrupted run" in again.stderr
    report = json.loads(again.stdout)
    assert report["version"] == "v0001" and report["promoted"], report
    asked = json.loads(pllm("ask", "Say hi.", "--json", "-n", "8", env=env).stdout)
    assert asked["adapter"] == "v0001"
