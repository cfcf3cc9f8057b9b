"""The web playground in a real browser (Debian's chromium, driven by playwright) against a real
`kinema serve` with the tiny model: sign in, generate, follow progress, play the clip, the gallery
and its details, cancel, delete, resuming a generation after a reload, first and last frames from
images, length and size, and extending a finished clip."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Browser, Locator, Page, Request, expect, sync_playwright

from kinema import Client
from kinema.catalog.registry import HOSTED_ALIASES, KLING_ALIASES, TINY_LTX2
from kinema.contracts.aimlapi import PROMPT_LIMIT
from tests.conftest import (
    OTHER_KEY,
    TEST_KEY,
    ServerProcess,
    kinema_env,
    launch_server,
    start_kinema,
)

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
# A worker started mid-test loads the model first.
WORKER_START_TIMEOUT_MS = 120_000
SHORT_KEY = "shortkey"
SMALL_IMAGE_LIMIT = 50_000
TIMES = "\N{MULTIPLICATION SIGN}"

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
# Relative luminance contrast (WCAG 2.x) of an element's text on its background.
CONTRAST = """(node) => {
  const channels = (css) => css.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const luminance = (css) => {
    const [r, g, b] = channels(css).map((v) => {
      const c = v / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const style = getComputedStyle(node);
  const [hi, lo] = [luminance(style.color), luminance(style.backgroundColor)].sort((a, b) => b - a);
  return (hi + 0.05) / (lo + 0.05);
}"""
IMAGE_LOADED = "(img) => img.complete && img.naturalWidth > 0"
# A file dropped on an element: the DataTransfer a drag from the desktop carries.
DROPPED_FILE = """([name, type, data]) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, {type}));
  return transfer;
}"""
# Whether a preview canvas shows the picked image (not blank): its size and a sample's colour.
CANVAS_FACTS = """(canvas) => {
  const [r, g, b, a] = canvas.getContext("2d")
    .getImageData(Math.floor(canvas.width * 0.7), Math.floor(canvas.height * 0.3), 1, 1).data;
  return {width: canvas.width, height: canvas.height, rgba: [r, g, b, a],
    shown: canvas.getBoundingClientRect().width};
}"""
HAS_METADATA = "(video) => video.readyState >= 1"
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


@pytest.fixture
def queue_only(tmp_path: Path, tiny_weights: Path) -> Iterator[ServerProcess]:
    """A `kinema serve` with no worker: its jobs stay queued until a test starts one."""
    keys = f"{TEST_KEY},{OTHER_KEY},{SHORT_KEY}"
    running = launch_server(tmp_path / "data", tiny_weights, "--no-worker", KINEMA_API_KEYS=keys)
    yield running
    running.stop()


@pytest.fixture
def small_images(tmp_path: Path, tiny_weights: Path) -> Iterator[ServerProcess]:
    """A `kinema serve` (no worker) that takes input images up to SMALL_IMAGE_LIMIT bytes."""
    limit = str(SMALL_IMAGE_LIMIT)
    running = launch_server(
        tmp_path / "data", tiny_weights, "--no-worker", KINEMA_INPUT_MAX_BYTES=limit
    )
    yield running
    running.stop()


@pytest.fixture
def start_worker(queue_only: ServerProcess, tiny_weights: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        env = kinema_env(queue_only.data_dir, tiny_weights)
        log = queue_only.data_dir.parent / "worker.log"
        started.append(start_kinema(["worker", "--log-level", "warning"], env, log))

    yield start
    for worker in started:
        worker.terminate()
        worker.wait(30)


def sign_in(page: Page, server: ServerProcess, key: str = TEST_KEY) -> None:
    page.goto(f"{server.url}/")
    page.fill("#api-key", key)
    page.click("#sign-in")


def wait_until(locator: Locator, predicate: str, timeout: float = 15) -> None:
    """Polls `predicate` on the element from here: page.wait_for_function evaluates its string
    with eval in the page, which the playground's CSP (rightly) refuses."""
    deadline = time.monotonic() + timeout
    while not locator.evaluate(predicate):
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        time.sleep(0.05)


def signed_path(url: str | None) -> str:
    """A signed download URL without its signature and expiry, which change on every render."""
    return urlsplit(url or "").path


def completed_job(server: ServerProcess, prompt: str) -> str:
    """A clip made through the API, so a test does not depend on another's gallery."""
    with Client(server.url, api_key=TEST_KEY) as client:
        job = client.create(prompt, model="tiny-ltx2", seed=3)
        assert client.wait(job.id, timeout=60).status == "completed"
    return job.id


def card_of(page: Page, job_id: str) -> Any:
    return page.locator(f'#gallery article[data-id="{job_id}"]')


def picture(width: int = 640, height: int = 360, kind: str = "PNG", noise: bool = False) -> bytes:
    """A small landscape (a sky, a sun, a hill) as image bytes; with `noise`, one that does not
    compress, so its size is about width x height x 3 bytes."""
    if noise:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", (width, height))
        draw = ImageDraw.Draw(image)
        for y in range(height):
            draw.line([(0, y), (width, y)], fill=(30 + 100 * y // height, 70, 150))
        draw.ellipse(
            [width * 0.62, height * 0.12, width * 0.8, height * 0.12 + width * 0.18],
            fill=(250, 170, 60),
        )
        draw.rectangle([0, height * 0.75, width, height], fill=(40, 100, 55))
    out = io.BytesIO()
    image.save(out, kind)
    return out.getvalue()


def pick(page: Page, slot: str, name: str, data: bytes, mime: str = "image/png") -> None:
    page.set_input_files(f"#{slot}-frame-file", {"name": name, "mimeType": mime, "buffer": data})


def drop(page: Page, slot: str, name: str, data: bytes, mime: str) -> None:
    """Drags a file from outside the page onto the slot's drop zone and lets go."""
    transfer = page.evaluate_handle(DROPPED_FILE, [name, mime, base64.b64encode(data).decode()])
    zone = f"#{slot}-frame-drop"
    page.dispatch_event(zone, "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(zone, "dragover", {"dataTransfer": transfer})
    expect(page.locator(f"#{slot}-frame")).to_have_class(re.compile(r"\bdragging\b"))
    page.dispatch_event(zone, "drop", {"dataTransfer": transfer})


def data_uri_bytes(uri: str, media_type: str) -> bytes:
    prefix = f"data:{media_type};base64,"
    assert uri.startswith(prefix), uri[:40]
    return base64.b64decode(uri[len(prefix) :])


def is_create(request: Request) -> bool:
    return request.method == "POST" and urlsplit(request.url).path == "/v2/video/generations"


def is_extension(request: Request) -> bool:
    return request.method == "POST" and urlsplit(request.url).path == "/v1/videos/extensions"


def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot from the top (the sticky header then sits where it belongs)."""
    page.evaluate("window.scrollTo(0, 0)")
    path = artifacts_dir() / name
    page.screenshot(path=str(path), full_page=True)
    return path


def generate(page: Page, prompt: str) -> str:
    page.fill("#prompt", prompt)
    page.click("#generate")
    expect(page.locator("#job-prompt")).to_have_text(prompt)
    return page.text_content("#job-id") or ""


def test_a_wrong_key_is_refused_and_a_right_one_kept_in_session_storage_only(
    page: Page, server: ServerProcess
) -> None:
    problems = Problems(page)
    sign_in(page, server, "kin_not_a_real_key_0000000000")
    expect(page.locator("#signin-error")).to_have_text("This API key is not valid.")
    expect(page.locator("#api-key")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#app")).to_be_hidden()

    page.fill("#api-key", TEST_KEY)
    page.click("#sign-in")
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#account-key")).to_have_text("kin_…6789")
    assert page.evaluate("sessionStorage.getItem('kinema.apiKey')") == TEST_KEY
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []

    page.reload()  # the tab keeps its session
    expect(page.locator("#app")).to_be_visible()
    page.click("#sign-out")
    expect(page.locator("#signin")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    assert not problems.found, problems.found


def test_an_empty_key_is_answered_by_an_error_at_the_field(
    page: Page, server: ServerProcess
) -> None:
    page.goto(f"{server.url}/")
    page.click("#sign-in")
    error = page.locator("#signin-error")
    expect(error).to_be_visible()
    expect(error).to_have_text("Enter your API key to sign in.")
    field = page.locator("#api-key")
    expect(field).to_be_focused()
    expect(field).to_have_attribute("aria-invalid", "true")
    described_by = (field.get_attribute("aria-describedby") or "").split()
    assert "signin-error" in described_by

    field.type("k")  # typing clears the complaint
    expect(error).to_be_hidden()
    expect(field).not_to_have_attribute("aria-invalid", "true")


def test_a_short_key_is_shown_shortened_never_as_an_ellipsis_alone(
    page: Page, queue_only: ServerProcess
) -> None:
    sign_in(page, queue_only, SHORT_KEY)
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#account-key")).to_have_text("…ey")  # a quarter of it at most
    expect(page.locator("#account")).not_to_contain_text("Key …")


def test_the_model_list_offers_the_served_models_and_names_the_aliases_in_a_hint(
    page: Page, server: ServerProcess
) -> None:
    server.wait_ready()  # its worker is live: the list counts it
    sign_in(page, server)
    expect(page.locator("#app")).to_be_visible()
    page.wait_for_load_state("networkidle")  # the list is refreshed from /v1/models
    options = page.locator("#model option")
    assert options.evaluate_all("(nodes) => nodes.map((n) => n.value)") == ["tiny-ltx2"]
    expect(options.first).to_have_text("tiny-ltx2 · 1 live worker")
    expect(page.locator("#model-workers")).to_have_text("")  # a warning only when none is live
    expect(page.locator("#model-description")).to_contain_text("tiny random weights")
    hint = page.locator("#model-aliases")
    expect(hint).to_contain_text(KLING_ALIASES[0])
    expect(hint).to_contain_text(f"{len(HOSTED_ALIASES)} hosted model ids")


def test_buttons_and_text_meet_wcag_aa_contrast(page: Page, server: ServerProcess) -> None:
    page.goto(f"{server.url}/")
    assert page.locator("#sign-in").evaluate(CONTRAST) >= 4.5
    page.hover("#sign-in")
    assert page.locator("#sign-in").evaluate(CONTRAST) >= 4.5
    page.fill("#api-key", TEST_KEY)
    page.click("#sign-in")
    expect(page.locator("#app")).to_be_visible()
    assert page.locator("#generate").evaluate(CONTRAST) >= 4.5
    checked = page.locator('input[name="duration"]:checked + span')
    assert checked.evaluate(CONTRAST) >= 4.5


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

    expect(page.locator("#job-status")).to_have_text("Completed", timeout=GENERATION_TIMEOUT_MS)
    seen = page.evaluate("window.__seen")
    pending = [s for s in seen if s["status"] in ("Queued", "Generating")]
    assert pending, seen
    assert any(s["stage"] for s in pending), seen
    assert {s["status"] for s in seen} <= {"Queued", "Generating", "Completed"}, seen

    video = page.locator("#result-video")
    wait_until(video, HAS_METADATA)
    facts = video.evaluate(VIDEO_FACTS)
    assert facts["error"] is None, facts
    assert 4.5 < facts["duration"] < 5.6, facts
    assert (facts["width"], facts["height"]) == (96, 54), facts
    played = video.evaluate(PLAY)
    assert played["currentTime"] > 0.2 and played["decoded"] > 0, played

    url = page.get_attribute("#result-download", "href") or ""
    assert url == facts["src"]
    ranged = httpx.get(url, headers={"Range": "bytes=0-99"})  # signed: no credentials needed
    assert ranged.status_code == 206 and len(ranged.content) == 100
    expect(page.locator("#result-meta")).not_to_contain_text("stage1")

    try:
        job_id = page.text_content("#job-id") or ""
        card = card_of(page, job_id)
        expect(card).to_be_visible()
        expect(card.locator(".prompt")).to_have_text(PROMPT)  # as text, never as HTML
        expect(card.locator(".badge")).to_have_text("Completed")  # the panel's word
        expect(card.locator(".length")).to_have_text("5 s")
        assert card.locator("video").count() == 0  # a still, not a player
        thumbnail = card.locator("img")
        expect(thumbnail).to_have_count(1)
        wait_until(thumbnail, IMAGE_LOADED)
        stored = httpx.get(
            f"{server.url}/v1/videos/{job_id}", headers={"Authorization": f"Bearer {TEST_KEY}"}
        ).json()
        assert signed_path(thumbnail.get_attribute("src")) == signed_path(stored["thumbnail_url"])

        # Details on click: a player, the parameters, timings for people, the actions.
        card.locator("button.open").click()
        details = page.locator("#details")
        expect(details).to_be_visible()
        expect(page.locator("#details-status")).to_have_text("Completed")
        expect(page.locator("#details-prompt")).to_have_text(PROMPT)
        expect(page.locator("#details-params")).to_contain_text("Seed7")
        timings = page.locator("#details-timings")
        expect(timings).to_contain_text("Denoising")
        expect(timings).to_contain_text("Prompt encoding")
        assert not re.search(r"[{}\"_]|stage1", timings.text_content() or ""), (
            timings.text_content()
        )
        assert re.search(r"\d+(\.\d)? (ms|s)", timings.text_content() or "")
        assert page.locator("#details-video").evaluate(LOAD_METADATA) > 4.5
        download = page.get_attribute("#details-download", "href")
        assert signed_path(download) == signed_path(stored["video_url"])
        page.keyboard.press("Escape")
        expect(details).to_be_hidden()

        # Re-run from the details: the same parameters, a new generation; with the event stream
        # cut off, the page falls back to polling.
        page.route(re.compile(r"/v2/video/generations/events\?"), lambda route: route.abort())
        card.locator("button.open").click()
        page.click("#details-rerun")
        expect(details).to_be_hidden()
        expect(page.locator("#job-id")).not_to_have_text(job_id)
        expect(page.locator("#prompt")).to_have_value(PROMPT)
        expect(page.locator("#seed")).to_have_value("7")
        expect(page.locator("#job-status")).to_have_text("Completed", timeout=GENERATION_TIMEOUT_MS)
        expect(page.locator("#job-transport")).to_have_text("polling")
        rerun_id = page.text_content("#job-id")
        expect(page.locator("#gallery article").first).to_have_attribute("data-id", rerun_id)
        expect(page.locator("#gallery article")).to_have_count(2)
    finally:  # the screenshot shows the state the test ended in, passed or not
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(artifacts_dir() / "playground.png"), full_page=True)
    assert not problems.found, problems.found


def test_the_mobile_layout_fits_a_phone_screen(page: Page, server: ServerProcess) -> None:
    job_id = completed_job(server, "a clip on a phone")
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, server)
    expect(card_of(page, job_id)).to_be_visible()
    fits = "() => document.documentElement.scrollWidth <= window.innerWidth"
    assert page.evaluate(fits)
    form_box = page.locator("#generate-form").bounding_box()
    panel_box = page.locator("#current").bounding_box()
    assert form_box and panel_box and panel_box["y"] > form_box["y"]  # one column
    card_of(page, job_id).locator("button.open").click()
    expect(page.locator("#details")).to_be_visible()  # it opens once the video is read
    dialog_box = page.locator("#details").bounding_box()
    assert dialog_box and dialog_box["width"] <= 390
    assert page.evaluate(fits)


def test_delete_asks_first_then_removes_the_video(page: Page, server: ServerProcess) -> None:
    job_id = completed_job(server, "a clip to delete")
    sign_in(page, server)
    card = card_of(page, job_id)
    card.locator("button.open").click()
    page.click("#details-delete")
    confirm = page.locator("#details-confirm")
    expect(confirm).to_be_visible()
    page.click("#details-delete-keep")  # changing one's mind deletes nothing
    expect(confirm).to_be_hidden()
    expect(page.locator("#details")).to_be_visible()

    page.click("#details-delete")
    page.click("#details-delete-confirm")
    expect(page.locator("#details")).to_be_hidden()
    expect(card).to_have_count(0)
    expect(page.locator("#gallery-status")).to_have_text("Deleted.")
    gone = httpx.get(
        f"{server.url}/v1/videos/{job_id}", headers={"Authorization": f"Bearer {TEST_KEY}"}
    )
    assert gone.status_code == 404
    page.reload()
    expect(page.locator("#app")).to_be_visible()
    page.wait_for_load_state("networkidle")  # the gallery is listed afresh
    expect(card).to_have_count(0)


def test_cancel_a_queued_generation_from_the_panel_and_from_its_details(
    page: Page, queue_only: ServerProcess
) -> None:
    problems = Problems(page)
    sign_in(page, queue_only)
    first = generate(page, "a clip nobody will wait for")
    expect(page.locator("#job-status")).to_have_text("Queued")
    expect(card_of(page, first).locator(".badge")).to_have_text("Queued")
    page.click("#job-cancel")
    expect(page.locator("#job-status")).to_have_text("Canceled")
    expect(page.locator("#job-cancel")).to_be_hidden()
    expect(page.locator("#job-error")).to_have_text("This generation was canceled.")
    expect(card_of(page, first).locator(".badge")).to_have_text("Canceled")

    second = generate(page, "another clip to call off")
    card_of(page, second).locator("button.open").click()
    expect(page.locator("#details-status")).to_have_text("Queued")
    page.click("#details-cancel")
    expect(page.locator("#details-status")).to_have_text("Canceled")
    expect(page.locator("#details-cancel")).to_be_hidden()
    expect(card_of(page, second).locator(".badge")).to_have_text("Canceled")
    page.click("#details-close")
    expect(page.locator("#job-status")).to_have_text("Canceled")  # the panel followed it
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    for job_id in (first, second):
        polled = httpx.get(
            f"{queue_only.url}/v2/video/generations?generation_id={job_id}", headers=headers
        ).json()
        assert polled["status"] == "error" and polled["error"]["name"] == "Canceled", polled
    assert not problems.found, problems.found


def test_a_job_deleted_elsewhere_while_followed_is_reported_not_shown_broken(
    page: Page, queue_only: ServerProcess
) -> None:
    problems = Problems(page)
    sign_in(page, queue_only)
    job_id = generate(page, "a clip deleted from another tab")
    expect(page.locator("#job-transport")).to_have_text("live")
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    assert httpx.delete(f"{queue_only.url}/v1/videos/{job_id}", headers=headers).is_success
    expect(page.locator("#job-error")).to_contain_text("Lost track of this generation")
    expect(page.locator("#job-error")).to_contain_text("not found")
    expect(page.locator("#job-status")).to_have_text("Queued")  # the last state it had
    # The stream's own not_found event said why it ended: no fallback to polling a deleted job.
    expect(page.locator("#job-transport")).to_have_text("live")
    assert not problems.found, problems.found


def test_a_reload_mid_generation_resumes_following_the_job(
    page: Page, queue_only: ServerProcess, start_worker: Any
) -> None:
    problems = Problems(page)
    sign_in(page, queue_only)
    page.fill("#negative-prompt", "blurry")
    page.check('input[name="duration"][value="10"]', force=True)
    page.fill("#seed", "11")
    job_id = generate(page, "a lighthouse in a storm, waves crashing")
    expect(page.locator("#job-status")).to_have_text("Queued")
    expect(card_of(page, job_id).locator(".badge")).to_have_text("Queued")

    page.reload()
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#job-id")).to_have_text(job_id)
    expect(page.locator("#job-status")).to_have_text("Queued")
    expect(page.locator("#job-stage")).to_have_text("next in queue")
    expect(page.locator("#job-prompt")).to_have_text("a lighthouse in a storm, waves crashing")
    expect(page.locator("#job-transport")).to_have_text("live")
    expect(page.locator("#prompt")).to_have_value("a lighthouse in a storm, waves crashing")
    expect(page.locator("#negative-prompt")).to_have_value("blurry")
    expect(page.locator("#seed")).to_have_value("11")
    expect(page.locator('input[name="duration"][value="10"]')).to_be_checked()
    expect(card_of(page, job_id).locator(".badge")).to_have_text("Queued")

    page.evaluate(RECORD_PROGRESS)
    start_worker()
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=WORKER_START_TIMEOUT_MS)
    statuses = {s["status"] for s in page.evaluate("window.__seen")}
    assert statuses <= {"Queued", "Generating", "Completed"}, statuses
    player = page.locator("#result-video")
    wait_until(player, HAS_METADATA)
    assert 9.5 < player.evaluate("(video) => video.duration") < 10.6
    card = card_of(page, job_id)
    expect(card.locator(".badge")).to_have_text("Completed")
    expect(card.locator("img")).to_have_count(1)

    page.reload()  # a finished job stays in the panel, with its clip
    expect(page.locator("#job-status")).to_have_text("Completed")
    expect(page.locator("#job-result")).to_be_visible()
    assert not problems.found, problems.found


def test_pick_a_first_frame_and_drop_a_last_one_then_generate_from_them(
    page: Page, server: ServerProcess
) -> None:
    problems = Problems(page)
    sign_in(page, server)
    expect(page.locator("#first-frame-drop")).to_be_visible()
    expect(page.locator("#first-frame-drop")).to_contain_text("Drop an image here")
    expect(page.locator("#first-frame-preview")).to_be_hidden()

    first = picture()
    pick(page, "first", "sunset.png", first)
    preview = page.locator("#first-frame-preview")
    expect(preview).to_be_visible()
    expect(preview).to_contain_text("First frame")
    expect(page.locator("#first-frame-name")).to_have_text(
        f"sunset.png · 640{TIMES}360 · " + (f"{float(f'{len(first) / 1000:.3g}'):g} kB")
    )
    expect(page.locator("#first-frame-drop")).to_be_hidden()
    canvas = page.locator("#first-frame-canvas")
    facts = canvas.evaluate(CANVAS_FACTS)
    assert facts["width"] * 360 == facts["height"] * 640 and facts["shown"] > 100, facts
    red, green, blue, alpha = facts["rgba"]
    assert alpha == 255 and red > 200 and green > 120 and blue < 120, facts  # the sun
    expect(canvas).to_have_attribute("aria-label", "First frame: sunset.png")

    last = picture(320, 180, "JPEG")
    drop(page, "last", "hills.jpg", last, "image/jpeg")
    expect(page.locator("#last-frame-preview")).to_be_visible()
    expect(page.locator("#last-frame-preview")).to_contain_text("Last frame")
    expect(page.locator("#last-frame")).not_to_have_class(re.compile(r"\bdragging\b"))

    page.fill("#prompt", "the sun sets behind the hills")
    shot = screenshot(page, "playground-image.png")
    assert shot.stat().st_size > 0
    with page.expect_request(is_create) as sent:
        page.click("#generate")
    body = json.loads(sent.value.post_data or "{}")
    assert data_uri_bytes(body["image_url"], "image/png") == first
    assert data_uri_bytes(body["tail_image_url"], "image/jpeg") == last
    assert body["model"] == "tiny-ltx2"

    expect(page.locator("#job-status")).to_have_text("Completed", timeout=GENERATION_TIMEOUT_MS)
    video = page.locator("#result-video")
    wait_until(video, HAS_METADATA)
    facts = video.evaluate(VIDEO_FACTS)
    assert facts["error"] is None and 4.5 < facts["duration"] < 5.6, facts
    played = video.evaluate(PLAY)
    assert played["currentTime"] > 0.2 and played["decoded"] > 0, played
    expect(preview).to_be_visible()  # the images stay for the next generation

    # Re-run from the details brings both images back, from kinema's stored copies.
    job_id = page.text_content("#job-id")
    page.click("#first-frame-remove")
    page.click("#last-frame-remove")
    card = page.locator(f'#gallery article[data-id="{job_id}"]')
    card.locator("button.open").click()
    with page.expect_request(is_create) as sent:
        page.click("#details-rerun")
    body = json.loads(sent.value.post_data or "{}")
    assert data_uri_bytes(body["image_url"], "image/png") == first
    assert data_uri_bytes(body["tail_image_url"], "image/jpeg") == last
    expect(page.locator("#first-frame-name")).to_contain_text(f"640{TIMES}360")
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=GENERATION_TIMEOUT_MS)

    # Removed, an image is gone from the page and from the next request.
    page.click("#first-frame-remove")
    expect(preview).to_be_hidden()
    expect(page.locator("#first-frame-drop")).to_be_visible()
    expect(page.locator("#first-frame-file")).to_be_focused()
    refused = {"statusCode": 400, "message": "stopped by the test", "errors": []}
    page.route(
        re.compile(r"/v2/video/generations$"),
        lambda route: route.fulfill(status=400, json=refused),
    )
    with page.expect_request(is_create) as sent:
        page.click("#generate")
    body = json.loads(sent.value.post_data or "{}")
    assert "image_url" not in body
    assert data_uri_bytes(body["tail_image_url"], "image/jpeg") == last
    expect(page.locator("#form-error-message")).to_have_text("stopped by the test")
    assert not problems.found, problems.found


def test_other_files_and_files_over_the_limit_are_refused_at_the_picker(
    page: Page, small_images: ServerProcess
) -> None:
    problems = Problems(page)
    sign_in(page, small_images)
    expect(page.locator("#first-frame-hint")).to_have_text("JPEG, PNG or WebP, up to 50 kB")
    error = page.locator("#first-frame-error")

    pick(page, "first", "anim.gif", b"GIF89a" + bytes(64), "image/gif")
    expect(error).to_have_text("“anim.gif” is not a JPEG, PNG or WebP image.")
    expect(page.locator("#first-frame-file")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#first-frame-preview")).to_be_hidden()

    # The name and the declared type do not make a file an image: its bytes do.
    pick(page, "first", "notes.png", b"just some text, not a picture", "image/png")
    expect(error).to_have_text("“notes.png” is not a JPEG, PNG or WebP image.")
    broken = picture()[:40]  # a PNG's header and nothing after it
    pick(page, "first", "broken.png", broken)
    expect(error).to_have_text("“broken.png” could not be read as an image.")

    big = picture(160, 160, noise=True)
    assert len(big) > SMALL_IMAGE_LIMIT
    pick(page, "first", "noise.png", big)
    expected = re.compile(r"“noise\.png” is \d+(\.\d+)? kB; images may be at most 50 kB\.")
    expect(error).to_have_text(expected)
    expect(page.locator("#first-frame-preview")).to_be_hidden()

    drop(page, "last", "clip.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4")
    expect(page.locator("#last-frame-error")).to_contain_text("is not a JPEG, PNG or WebP image")

    # A WebP that fits is taken (the media type from its bytes, not the declared one), and
    # taking it clears the complaint.
    webp = picture(64, 36, "WEBP")
    pick(page, "first", "small.webp", webp, "application/octet-stream")
    expect(page.locator("#first-frame-preview")).to_be_visible()
    expect(error).to_be_hidden()
    expect(page.locator("#first-frame-file")).not_to_have_attribute("aria-invalid", "true")
    page.fill("#prompt", "a small picture")
    with page.expect_request(is_create) as sent:
        page.click("#generate")
    body = json.loads(sent.value.post_data or "{}")
    assert data_uri_bytes(body["image_url"], "image/webp") == webp
    expect(page.locator("#job-status")).to_have_text("Queued")  # no worker here
    assert not problems.found, problems.found


def test_the_length_and_size_controls_offer_what_the_model_makes_and_reach_the_job(
    page: Page, server: ServerProcess
) -> None:
    problems = Problems(page)
    sign_in(page, server)
    slider = page.locator("#seconds")
    expect(slider).to_have_attribute("min", f"{TINY_LTX2.min_seconds:g}")
    expect(slider).to_have_attribute("max", f"{TINY_LTX2.max_seconds:g}")
    expect(page.locator("#seconds-hint")).to_have_text("tiny-ltx2 makes 1 to 20 s at 24 fps.")
    sizes = page.locator("#size option").evaluate_all("(nodes) => nodes.map((n) => n.value)")
    assert sizes == ["96x54", "54x96", "64x64", "1280x720", "1792x1024", "720x1280", "1024x1792"]
    expect(page.locator("#size")).to_have_value("96x54")

    # A size picks its aspect ratio; an aspect ratio of another shape picks its native size.
    page.select_option("#size", "1024x1792")
    expect(page.locator('input[name="aspect_ratio"][value="9:16"]')).to_be_checked()
    page.check('input[name="aspect_ratio"][value="16:9"]', force=True)
    expect(page.locator("#size")).to_have_value("96x54")
    page.select_option("#size", "64x64")
    expect(page.locator('input[name="aspect_ratio"][value="1:1"]')).to_be_checked()

    # The chips are shortcuts on the slider; a length between them checks neither.
    page.check('input[name="duration"][value="10"]', force=True)
    expect(slider).to_have_value("10")
    expect(page.locator("#seconds-value")).to_have_text("10 s")
    slider.focus()
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(slider).to_have_value("3")
    expect(page.locator("#seconds-value")).to_have_text("3 s")
    expect(page.locator('input[name="duration"]:checked')).to_have_count(0)

    page.fill("#prompt", "a square clip of three seconds")
    with page.expect_request(is_create) as sent:
        page.click("#generate")
    body = json.loads(sent.value.post_data or "{}")
    assert (body["duration"], body["width"], body["height"]) == (3, 64, 64), body
    assert body["aspect_ratio"] == "1:1"
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=GENERATION_TIMEOUT_MS)
    video = page.locator("#result-video")
    wait_until(video, HAS_METADATA)
    facts = video.evaluate(VIDEO_FACTS)
    assert (facts["width"], facts["height"]) == (64, 64) and 2.9 < facts["duration"] < 3.6, facts
    expect(page.locator("#result-meta")).to_contain_text(f"Size64{TIMES}64")

    job_id = page.text_content("#job-id") or ""
    stored = httpx.get(
        f"{server.url}/v1/videos/{job_id}", headers={"Authorization": f"Bearer {TEST_KEY}"}
    ).json()
    assert (stored["seconds"], stored["size"], stored["aspect_ratio"]) == ("3", "64x64", "1:1")
    page.click("#result-details")
    expect(page.locator("#details-params")).to_contain_text(f"Size64{TIMES}64")
    expect(page.locator("#details-params")).to_contain_text("Duration3 s")
    page.keyboard.press("Escape")

    page.reload()  # the tab keeps the choices
    expect(page.locator("#app")).to_be_visible()
    expect(slider).to_have_value("3")
    expect(page.locator("#size")).to_have_value("64x64")
    expect(page.locator('input[name="aspect_ratio"][value="1:1"]')).to_be_checked()
    assert not problems.found, problems.found


def test_extend_a_finished_clip_from_its_details_and_again_from_the_panel(
    page: Page, server: ServerProcess
) -> None:
    problems = Problems(page)
    source = completed_job(server, "a clip to extend")
    sign_in(page, server)
    card_of(page, source).locator("button.open").click()
    expect(page.locator("#details-extend-form")).to_be_visible()
    expect(page.locator("#details-extend-seconds")).to_have_value("4")
    page.fill("#details-extend-seconds", "2")
    with page.expect_request(is_extension) as sent:
        page.click("#details-extend")
    request = sent.value
    assert json.loads(request.post_data or "{}") == {
        "prompt": "a clip to extend",
        "seconds": 2,
        "video": {"id": source},
    }
    assert request.all_headers()["authorization"] == f"Bearer {TEST_KEY}"
    expect(page.locator("#details")).to_be_hidden()
    expect(page.locator("#job-id")).not_to_have_text(source)
    expect(page.locator("#job-origin")).to_have_text(f"Extends {source} by 2 s")
    expect(page.locator("#job-prompt")).to_have_text("a clip to extend")
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=GENERATION_TIMEOUT_MS)
    first_extension = page.text_content("#job-id") or ""
    video = page.locator("#result-video")
    wait_until(video, HAS_METADATA)
    assert 6.9 < video.evaluate("(video) => video.duration") < 7.6
    expect(page.locator("#result-meta")).to_contain_text(f"Extends{source} (5 s + 2 s)")

    # A length the model cannot make is answered at the field, with no request.
    extend_seconds = page.locator("#extend-seconds")
    expect(extend_seconds).to_have_value("4")
    extend_seconds.fill("0")
    page.click("#extend")
    expect(page.locator("#extend-error")).to_have_text("Enter whole seconds from 1 to 20.")
    expect(extend_seconds).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#job-id")).to_have_text(first_extension)

    extend_seconds.fill("4")
    with page.expect_request(is_extension) as sent:
        page.click("#extend")
    assert json.loads(sent.value.post_data or "{}")["video"] == {"id": first_extension}
    expect(page.locator("#extend-error")).to_be_hidden()
    expect(page.locator("#job-origin")).to_have_text(f"Extends {first_extension} by 4 s")
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=GENERATION_TIMEOUT_MS)
    second_extension = page.text_content("#job-id") or ""
    wait_until(video, HAS_METADATA)
    assert 10.9 < video.evaluate("(video) => video.duration") < 11.7
    played = video.evaluate(PLAY)
    assert played["currentTime"] > 0.2, played

    newest = page.locator("#gallery article").first
    expect(newest).to_have_attribute("data-id", second_extension)
    expect(newest.locator(".length")).to_have_text("11 s")
    stored = httpx.get(
        f"{server.url}/v1/videos/{second_extension}",
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    ).json()
    assert stored["status"] == "completed" and 10.9 < float(stored["seconds"]) < 11.7, stored
    page.wait_for_load_state("networkidle")
    screenshot(page, "playground-extend.png")

    page.reload()  # the panel still says what the clip extends
    expect(page.locator("#job-status")).to_have_text("Completed")
    expect(page.locator("#job-origin")).to_have_text(f"Extends {first_extension} by 4 s")
    assert not problems.found, problems.found


def test_enhance_prompt_is_asked_for_and_the_prompt_the_model_ran_is_shown(
    page: Page, server: ServerProcess
) -> None:
    problems = Problems(page)
    sign_in(page, server)
    expect(page.locator("#enhance-prompt")).not_to_be_checked()
    page.fill("#prompt", "a fox")
    page.check("#enhance-prompt")
    with page.expect_request(is_create) as sent:
        page.click("#generate")
    assert json.loads(sent.value.post_data or "{}")["enhance_prompt"] is True
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=GENERATION_TIMEOUT_MS)
    meta = page.locator("#result-meta")
    expect(meta).to_contain_text("Prompt used")
    rewrite = meta.locator("dt:has-text('Prompt used') + dd").text_content() or ""
    assert rewrite.strip() and rewrite != "a fox"
    screenshot(page, "playground-enhanced-prompt.png")
    assert not problems.found, problems.found


@pytest.fixture
def with_loras(tmp_path: Path, tiny_weights: Path, lora_dir: Path) -> Iterator[ServerProcess]:
    """A `kinema serve` (with its worker) offering the tiny model two LoRAs: glow and grain."""
    running = launch_server(tmp_path / "data", tiny_weights, KINEMA_LORA_DIR=str(lora_dir))
    yield running
    running.stop()


def test_loras_are_picked_with_scales_and_the_clip_says_which_ran(
    page: Page, with_loras: ServerProcess
) -> None:
    problems = Problems(page)
    sign_in(page, with_loras)
    picker = page.locator("#loras")
    expect(picker).to_be_visible()
    rows = picker.locator(".lora")
    assert rows.locator(".lora-pick").evaluate_all("(boxes) => boxes.map((b) => b.value)") == [
        "glow",
        "grain",
    ]
    page.fill("#prompt", "a fox")
    page.check(".lora-pick[value='glow']")
    page.get_by_label("glow scale").fill("0.5")
    with page.expect_request(is_create) as sent:
        page.click("#generate")
    assert json.loads(sent.value.post_data or "{}")["loras"] == [{"name": "glow", "scale": 0.5}]
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=GENERATION_TIMEOUT_MS)
    meta = page.locator("#result-meta")
    expect(meta.locator("dt:has-text('LoRAs') + dd")).to_have_text("glow at 0.5")
    expect(page.locator("#model-workers")).to_have_text("")  # the worker that made it counts
    screenshot(page, "playground-loras.png")
    page.reload()  # the form comes back as it was
    expect(page.locator(".lora-pick[value='glow']")).to_be_checked()
    expect(page.get_by_label("glow scale")).to_have_value("0.5")
    expect(page.locator(".lora-pick[value='grain']")).not_to_be_checked()
    assert not problems.found, problems.found


def test_a_model_without_loras_shows_no_picker(page: Page, server: ServerProcess) -> None:
    sign_in(page, server)
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#loras")).to_be_hidden()
