"""The device and the T-tier end to end: the real `pllm` script, the real vault, the real service on loopback."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pllm.bench.privacy import DEFAULT_DATA, leak_test, load_sentences
from pllm.cloud.server import create_app
from pllm.config import Settings
from pllm.http_serving import serve_background
from pllm.personal.augment import FILTERS

Run = Callable[..., subprocess.CompletedProcess[str]]
PASS = {"PLLM_PASSPHRASE": "s3cret"}


@pytest.fixture
def home(pllm: Run, pllm_home: Path) -> Path:
    assert pllm("init", "--name", "Mara Lindqvist", env=PASS).returncode == 0
    return pllm_home


@pytest.fixture
def recording_cloud(foundation: object, tmp_path: Path) -> Iterator[tuple[dict[str, str], list[tuple[str, bytes]]]]:
    """The service on loopback, recording every request body it receives; yields the device's environment."""
    recorded: list[tuple[str, bytes]] = []
    app = create_app(Settings(home=tmp_path / "cloud"), foundation=foundation,  # type: ignore[arg-type]
                     state_dir=tmp_path / "cloud", record=recorded)
    key = app.state.devices.add("test-device")
    with serve_background(app) as url:
        yield {**PASS, "PLLM_CLOUD_URL": url, "PLLM_CLOUD_KEY": key}, recorded


def test_ask_cloud_sends_only_redacted_text_and_the_report_accounts_for_it(
        pllm: Run, home: Path, tmp_path: Path, recording_cloud: tuple[dict[str, str], list[tuple[str, bytes]]]) -> None:
    env, recorded = recording_cloud
    note = tmp_path / "note.txt"
    note.write_text("My dentist is Dr. Okafor, reach her at okafor.dental@example.org or 415-555-0198.")
    assert pllm("ingest", str(note), env=env).returncode == 0
    asked = pllm("ask", "--cloud", "--json", "How do I reach my dentist?", env=env)
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["tier"] == "cloud"
    bodies = [body.decode() for path, body in recorded if path.startswith("/v1/")]
    assert len(bodies) == 1
    for secret in ("Okafor", "okafor.dental@example.org", "415-555-0198", "Mara", "Lindqvist"):
        assert secret not in bodies[0]
    assert "[EMAIL_ADDRESS_1]" in bodies[0], bodies[0]
    report = pllm("privacy", "report", "--json", env=env)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["requests"] == 1 and data["by_destination"] == {"cloud": 1}
    assert data["egress"][0]["redacted_text"] == bodies[0]
    assert {"EMAIL_ADDRESS", "PHONE_NUMBER", "PERSON"} <= set(data["entities"])
    shown = pllm("privacy", "report", "--show", env=env)
    assert "[EMAIL_ADDRESS_1]" in shown.stdout and "okafor.dental" not in shown.stdout


def test_with_the_cloud_down_ask_answers_on_the_device(pllm: Run, home: Path) -> None:
    env = {**PASS, "PLLM_CLOUD_URL": "http://127.0.0.1:9", "PLLM_CLOUD_RETRIES": "1"}
    asked = pllm("ask", "--cloud", "Say hello.", env=env)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.strip()
    notes = [line for line in asked.stderr.splitlines() if line.strip()]
    assert len(notes) == 1 and "unreachable" in notes[0] and "Traceback" not in asked.stderr
    assert pllm("ask", "Say hello.", env=env).returncode == 0
    routed = pllm("ask", "--explain-route", "How long should bread dough prove?", "-n", "8", env=env)
    assert routed.returncode == 0 and routed.stdout.strip(), routed.stderr
    lines = [line for line in routed.stderr.splitlines() if line.strip()]
    assert "unreachable" in lines[0] and lines[-1].startswith("route: local:") and "no cloud to ask" in lines[-1]


def test_consent_none_refuses_the_cloud_in_one_line(pllm: Run, home: Path,
                                                    recording_cloud: tuple[dict[str, str], list]) -> None:
    env, recorded = recording_cloud
    asked = pllm("ask", "--cloud", "Say hello.", env={**env, "PLLM_CONSENT": '{"cloud": "none"}'})
    assert asked.returncode == 2
    assert asked.stderr.startswith("error: nothing may leave the device") and "Traceback" not in asked.stderr
    assert recorded == []


def test_no_canary_of_the_labelled_set_reaches_the_cloud() -> None:
    """The leak test: every personal value of the labelled set is a canary in the vault; questions and an
    augmentation go to a recording T-tier; no body may contain one, and the egress log must list every request."""
    sentences = [s for s in load_sentences(DEFAULT_DATA) if s.pii]
    result = leak_test(sentences, Settings(), questions=4, max_tokens=8)
    assert result.canaries >= 50
    assert result.leaked == []
    assert result.requests == result.logged >= 4 + len(sentences) // 8
    assert result.entities["PERSON"] >= 20


NOTES = ["Went running along the canal before work, legs heavy but the light was worth it.",
         "Tried a new recipe tonight: lentil soup with too much cumin. Will halve it next time.",
         "Finished the chapter on tide pools; I keep thinking about the anemones.",
         "Long call with Jonas about the garden plot. We agreed on tomatoes and beans."]


def _ingest_notes(pllm: Run, tmp_path: Path, env: dict[str, str]) -> None:
    notes = tmp_path / "notes.jsonl"
    notes.write_text("\n".join(json.dumps({"text": t, "timestamp": 1_700_000_000 + n * 86400})
                               for n, t in enumerate(NOTES)))
    assert pllm("ingest", str(notes), env=env).returncode == 0


def test_augment_stores_synthetic_items_apart_through_the_gate(
        pllm: Run, home: Path, tmp_path: Path, recording_cloud: tuple[dict[str, str], list[tuple[str, bytes]]]) -> None:
    env, recorded = recording_cloud
    _ingest_notes(pllm, tmp_path, env)
    done = pllm("augment", "--per-seed", "3", "--no-adapt", "--json", env=env)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["seeds"] == 4 and figures["proposed"] > 0 and figures["usage"]["requests"] == 12
    assert figures["kept"] == figures["stored"] == figures["proposed"] - sum(figures[k] for k in FILTERS)
    bodies = [body.decode() for path, body in recorded if path == "/v1/augment"]
    assert len(bodies) == 2  # 4 seeds x 3 new items, at most 8 new items a request
    assert not any("Jonas" in body for body in bodies) and any("[PERSON_1]" in body for body in bodies)
    exported = json.loads(pllm("profile", "export", env=env).stdout)
    assert len(exported["documents"]) == 4  # the user's own words, untouched
    assert len(exported["synthetic"]) == figures["stored"]
    assert exported["egress"][-1]["purpose"] == "augment"


def test_augment_with_the_cloud_down_exits_2_in_one_line(pllm: Run, home: Path, tmp_path: Path) -> None:
    _ingest_notes(pllm, tmp_path, PASS)
    done = pllm("augment", env={**PASS, "PLLM_CLOUD_URL": "http://127.0.0.1:9", "PLLM_CLOUD_RETRIES": "0"})
    assert done.returncode == 2
    assert done.stderr.startswith("error: the T-tier at http://127.0.0.1:9 is unreachable")
    assert done.stderr.count("\n") == 1


def test_a_signing_device_keeps_the_clouds_signed_receipts(pllm: Run, home: Path, foundation: object,
                                                           tmp_path: Path) -> None:
    public = pllm("privacy", "device-key", env=PASS)
    assert public.returncode == 0, public.stderr
    assert pllm("privacy", "device-key", env=PASS).stdout == public.stdout  # made once, kept in the vault
    state = tmp_path / "cloud"
    app = create_app(Settings(home=state), foundation=foundation, state_dir=state)  # type: ignore[arg-type]
    key = app.state.devices.add("maras-laptop", public.stdout.strip())
    with serve_background(app) as url:
        env = {**PASS, "PLLM_CLOUD_URL": url, "PLLM_CLOUD_KEY": key}
        asked = pllm("ask", "--cloud", "--json", "Name a colour.", "-n", "4", env=env)
        assert asked.returncode == 0 and json.loads(asked.stdout)["tier"] == "cloud", asked.stderr
        receipts = pllm("privacy", "receipts", "--json", env=env)
        assert receipts.returncode == 0, receipts.stderr
    kept = json.loads(receipts.stdout)
    assert [r["kind"] for r in kept["receipts"]] == ["grant", "charge"]
    assert all(r["signature_ok"] for r in kept["receipts"]) and kept["cloud_key"] == app.state.ledger.public_key
    shown = pllm("ledger", "show", "--json", "--state", str(state))
    assert shown.returncode == 0, shown.stderr
    ledger = json.loads(shown.stdout)
    assert ledger["chain"]["ok"] and ledger["entries"][-1]["device_signature"]
    assert ledger["balances"]["providers"]["t-model"] > 0


def test_shared_feedback_leaves_redacted_once_and_earns_credits(
        pllm: Run, home: Path, recording_cloud: tuple[dict[str, str], list[tuple[str, bytes]]]) -> None:
    from pllm.personal.vault import open_vault

    env, recorded = recording_cloud
    assert pllm("ask", "Write one line to my dentist, Dr. Okafor.", "-n", "12", env=PASS).returncode == 0
    vault = open_vault(home / "vault.db", PASS["PLLM_PASSPHRASE"])
    vault.add_feedback(vault.interactions()[-1].id, "edit", "Dear Dr. Okafor, see you Tuesday. Mara")
    vault.close()
    shared = pllm("privacy", "share-feedback", "--yes", env=env)
    assert shared.returncode == 0, shared.stderr
    assert "shared 1 feedback items, redacted; credited 0.20" in shared.stdout
    bodies = [body.decode() for path, body in recorded if path == "/v1/contributions"]
    assert len(bodies) == 1 and "Okafor" not in bodies[0] and "Mara" not in bodies[0] and "[PERSON_" in bodies[0]
    assert pllm("privacy", "share-feedback", "--yes", env=env).stdout.strip() == "no feedback to share"
    report = json.loads(pllm("privacy", "report", "--json", env=env).stdout)
    assert report["by_purpose"]["contribution"] == 1
