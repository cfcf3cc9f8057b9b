"""The web playground in a real browser (Debian's chromium, driven by playwright) against a real
`kinema serve` with the tiny model: sign in, generate, follow progress, play the clip, gallery."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from kinema.api.schemas import PROMPT_LIMIT
from tests.conftest import TEST_KEY, ServerProcess

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--no-first-run",
]
PROMPT = "a red fox trotting through fresh snow <b>not bold</b>"
GENERATION_TIMEOUT_MS = 45_000

# Records every state the progress panel shows, so the test sees progress before completion.
RECORD_PROGRESS = """() => {
  window.__seen = [];
  const text = (id) => document.getElementById(id).textContent;
  const record = () => window.__seen.push({
    status: text("job-status"), stage: text("job-stage"), progress: text("job-progress"),
  });
  new MutationObserver(record).observe(document.getElementById("current-job"),
    {subtree: true, childList: true, characterData: true, attributes: true});
}"""
VIDEO_FACTS = """(video) => ({
  duration: video.duration, width: video.videoWidth, height: video.videoHeight,
  error: video.error && video.error.code, src: video.currentSrc,
})"""
LOAD_METADATA = """async (video) => {
  video.preload = "metadata";
  if (video.readyState < 1) {
    await new Promise((resolve, reject) => {
      video.addEventListener("loadedmetadata", resolve, {once: true});
      video.addEventListener("error", () => reject(new Error("media error")), {once: true});
      video.load();
    });
  }
  return video.duration;
}"""
PLAY = """async (video) => {
  video.muted = true;
  await video.play();
  const start = performance.now();
  while (video.currentTime < 0.3 && performance.now() - start < 10000) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  video.pause();
  return {currentTime: video.currentTime, decoded: video.webkitVideoDecodedByteCount || 0};
}"""


def chromium() -> str:
    """Debian's chromium; a missing browser fails the test (scripts/setup.sh installs it)."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(path).exists(), "chromium is missing: run scripts/setup.sh"
    return path


def artifacts_dir() -> Path:
    path = Path(os.environ.get("KINEMA_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Problems:
    """Uncaught page errors and CSP violations: either fails the test."""

    def __init__(self, page: Page) -> None:
        self.found: list[str] = []
        page.on("pageerror", lambda error: self.found.append(f"page error: {error}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.found.append(f"CSP: {message.text}")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def sign_in(page: Page, server: ServerProcess, key: str = TEST_KEY) -> None:
    page.goto(f"{server.url}/")
    page.fill("#api-key", key)
    page.click("#sign-in")


def test_a_wrong_key_is_refused_and_a_right_one_kept_in_session_storage_only(
    page: Page, server: ServerProcess
) -> None:
    problems = Problems(page)
    sign_in(page, server, "kin_not_a_real_key_0000000000")
    expect(page.locator("#signin-error")).to_have_text("This API key is not valid.")
    expect(page.locator("#app")).to_be_hidden()

    page.fill("#api-key", TEST_KEY)
    page.click("#sign-in")
    expect(page.locator("#app")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('kinema.apiKey')") == TEST_KEY
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []

    page.reload()  # the tab keeps its session
    expect(page.locator("#app")).to_be_visible()
    page.click("#sign-out")
    expect(page.locator("#signin")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    assert not problems.found, problems.found


def test_a_rejected_request_shows_the_servers_message(page: Page, server: ServerProcess) -> None:
    sign_in(page, server)
    page.fill("#prompt", "a fox")
    page.fill("#seed", "4294967296")  # one past the contract's maximum: the server says no
    page.click("#generate")
    expect(page.locator("#form-error-message")).to_contain_text("Body validation error")
    expect(page.locator("#form-error-fields")).to_contain_text("seed")
    expect(page.locator("#seed")).to_have_attribute("aria-invalid", "true")


def test_generate_follow_play_and_find_it_in_the_gallery(page: Page, server: ServerProcess) -> None:
    problems = Problems(page)
    sign_in(page, server)
    expect(page.locator("#app")).to_be_visible()
    page.fill("#prompt", PROMPT)
    expect(page.locator("#prompt-counter")).to_have_text(f"{len(PROMPT)} / {PROMPT_LIMIT}")
    page.select_option("#model", "tiny-ltx2")
    page.fill("#seed", "7")
    page.evaluate(RECORD_PROGRESS)
    page.click("#generate")

    expect(page.locator("#job-status")).to_have_text("completed", timeout=GENERATION_TIMEOUT_MS)
    seen = page.evaluate("window.__seen")
    pending = [s for s in seen if s["status"] in ("queued", "generating")]
    assert pending, seen
    assert any(s["stage"] for s in pending), seen

    video = page.locator("#result-video")
    page.wait_for_function("document.getElementById('result-video').readyState >= 1")
    facts = video.evaluate(VIDEO_FACTS)
    assert facts["error"] is None, facts
    assert 4.5 < facts["duration"] < 5.6, facts
    assert (facts["width"], facts["height"]) == (96, 54), facts
    played = video.evaluate(PLAY)
    assert played["currentTime"] > 0.2 and played["decoded"] > 0, played

    url = page.get_attribute("#result-download", "href")
    assert url == facts["src"]
    ranged = httpx.get(url, headers={"Range": "bytes=0-99"})  # signed: no credentials needed
    assert ranged.status_code == 206 and len(ranged.content) == 100

    try:
        job_id = page.text_content("#job-id")
        card = page.locator(f'#gallery article[data-id="{job_id}"]')
        expect(card).to_be_visible()
        expect(card.locator(".prompt")).to_have_text(PROMPT)  # as text, never as HTML
        expect(card.locator(".params")).to_contain_text("seed 7")
        assert card.locator("video").evaluate(LOAD_METADATA) > 0  # its inline player works

        # Re-run: the same parameters, a new generation; with the event stream cut off, the page
        # falls back to polling.
        page.route(re.compile(r"/v2/video/generations/events\?"), lambda route: route.abort())
        card.get_by_role("button", name="Re-run").click()
        expect(page.locator("#job-id")).not_to_have_text(job_id)
        expect(page.locator("#prompt")).to_have_value(PROMPT)
        expect(page.locator("#seed")).to_have_value("7")
        expect(page.locator("#job-status")).to_have_text("completed", timeout=GENERATION_TIMEOUT_MS)
        expect(page.locator("#job-transport")).to_have_text("polling")
        rerun_id = page.text_content("#job-id")
        expect(page.locator("#gallery article").first).to_have_attribute("data-id", rerun_id)
        expect(page.locator("#gallery article")).to_have_count(2)
    finally:  # the screenshot shows the state the test ended in, passed or not
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(artifacts_dir() / "playground.png"), full_page=True)
    assert not problems.found, problems.found
