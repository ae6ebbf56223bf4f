"""The page at `/`, in headless Chromium (Debian's, driven by playwright) on a phone-sized screen, against the real
server, model and vault: a streamed answer, a thumbs-up that reaches the vault, the profile behind the token, and
nothing fetched from anywhere but the device."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pllm.api.app import create_app
from pllm.config import Settings
from pllm.http_serving import serve_background
from pllm.personal.vault import Vault, create_vault

PASSPHRASE = "s3cret"
NOTE = "My boat is called Seabird and I sail it on Sundays."
TOKEN = "t0ken"
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def chromium() -> Iterator[Callable[..., Any]]:
    """chromium(*args): Debian's Chromium launched headless through playwright (no browser build downloaded)."""
    path = shutil.which("chromium")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is installed by `make setup`")
    if path is None:
        pytest.skip("no chromium on PATH (`make setup` installs Debian's where it runs as root)")
    with playwright.sync_playwright() as p:
        yield lambda *args: p.chromium.launch(executable_path=path, args=["--no-sandbox", *args])


@pytest.fixture
def url(vault: Vault) -> Iterator[str]:
    with serve_background(create_app(Settings(api_token=TOKEN), vault, PASSPHRASE)) as where:
        yield where


def test_the_page_and_its_files_come_from_the_device(url: str) -> None:
    page = httpx.get(url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, works offline
    for asset in ("/web/app.js", "/web/style.css"):
        got = httpx.get(url + asset)
        assert got.status_code == 200 and "https://" not in got.text


def signed_in(browser: Any, where: str, requested: list[str] | None = None) -> Any:
    """The page on a phone-sized screen, with the token pasted in as a user would (every URL it requests goes into
    `requested`)."""
    page = browser.new_page(viewport=PHONE)
    if requested is not None:
        page.on("request", lambda r: requested.append(r.url))
    page.goto(where + "/")
    page.fill("#token", TOKEN)
    page.dispatch_event("#token", "change")
    return page


def test_chat_feedback_and_profile_in_a_real_browser(url: str, vault: Vault, chromium: Callable[..., Any]) -> None:
    requested: list[str] = []
    browser = chromium()
    page = signed_in(browser, url, requested)
    page.wait_for_function("document.querySelector('#summary').textContent.includes('Mara')")
    page.fill("#prompt", "What is my boat called?")
    page.press("#prompt", "Enter")
    answer = page.wait_for_selector("#log li.assistant .actions", timeout=120_000)
    assert answer is not None
    text = page.inner_text("#log li.assistant span")
    assert text and not text.startswith("error")
    page.click("#log li.assistant button[data-kind=up]")
    page.wait_for_selector("#log li.assistant button[data-kind=up].chosen")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    browser.close()
    logged = vault.conn.execute("SELECT i.answer, f.kind FROM feedback f JOIN interactions i ON i.id = "
                                "f.interaction_id").fetchall()
    assert [(a.strip(), k) for a, k in logged] == [(text.strip(), "up")]  # the thumbs-up names the answer shown
    assert requested and all(r.startswith(url) for r in requested)


def test_the_microphone_button_asks_by_voice(url: str, vault: Vault, speech: Callable[..., Path],
                                             chromium: Callable[..., Any]) -> None:
    """Chromium's fake capture device plays a rendered question into the page's microphone; the page records it,
    the device transcribes it, and the answer comes back to a spoken request."""
    question = speech("What is my boat called?", silence_s=4.0)  # the fake device loops the file: end in silence
    browser = chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                       f"--use-file-for-fake-audio-capture={question}")
    page = signed_in(browser, url)
    page.wait_for_function("document.querySelector('#summary').textContent.includes('Mara')")
    page.focus("#prompt")  # away from the token field, whose password popup would take the next click
    page.click("#mic")
    page.wait_for_selector("#mic.recording")
    page.wait_for_timeout(3_000)  # the question takes ~1.5 s to say
    page.click("#mic")
    page.wait_for_selector("#log li.assistant .actions", timeout=120_000)
    heard = page.inner_text("#log li.user")
    browser.close()
    assert "boat" in heard.lower(), heard
    logged = vault.conn.execute("SELECT prompt, modality FROM interactions").fetchall()
    assert [(p.strip(), m) for p, m in logged] == [(heard.strip(), "voice")]


def test_a_new_user_is_offered_the_onboarding_questions(pllm_home: Path, chromium: Callable[..., Any]) -> None:
    empty = create_vault(pllm_home / "empty.db", PASSPHRASE)
    with serve_background(create_app(Settings(api_token=TOKEN), empty, PASSPHRASE)) as where:
        browser = chromium()
        page = signed_in(browser, where)
        page.wait_for_selector("#onboarding input[name=name]")
        page.fill("#onboarding input[name=name]", "Mara")
        page.fill("#onboarding input[name=interests]", "sailing and jazz")
        page.click("#onboarding button[type=submit]")
        page.wait_for_function("document.querySelector('#facts').textContent.includes('sailing and jazz')")
        assert page.is_hidden("#onboarding-panel")
        browser.close()
    assert {(f.key, f.value) for f in empty.facts()} == {("name", "Mara"), ("interests", "sailing and jazz")}
    empty.close()
