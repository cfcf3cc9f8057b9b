"""The web playground's page and static files, through the real ASGI app (no browser)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from kinema.api.playground import STATIC_DIR, content_security_policy, render_page
from kinema.catalog.registry import KLING_ALIASES
from kinema.config import Settings
from kinema.contracts.aimlapi import PROMPT_LIMIT
from kinema.server import create_app

EXTERNAL_URL = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", re.IGNORECASE)
STATIC_TYPES = {
    "playground.js": "text/javascript",
    "playground.css": "text/css",
    "favicon.svg": "image/svg+xml",
}


class Page(HTMLParser):
    """What the page references and contains."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_script = False
        self.style_attributes = 0
        self.handler_attributes: list[str] = []
        self.model_options: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        self.style_attributes += "style" in found
        self.handler_attributes += [name for name in found if name.startswith("on")]
        if tag == "script":
            self.scripts.append(found)
            self._in_script = True
        if tag == "option":
            self.model_options.append(str(found.get("value")))

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        self.inline_script = self.inline_script or (self._in_script and bool(data.strip()))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def test_the_page_is_served_without_auth_as_html_under_a_strict_csp(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "media-src", "connect-src", "img-src"):
        assert directives[name] == "'self'", csp
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_page_runs_no_inline_code(client: TestClient) -> None:
    page = parse(client.get("/").text)
    assert not page.inline_script
    assert not page.style_attributes
    assert not page.handler_attributes
    assert [s.get("src", "").split("?")[0] for s in page.scripts] == ["/static/playground.js"]


def test_the_page_bakes_in_the_served_models_and_the_prompt_limit(client: TestClient) -> None:
    html = client.get("/").text
    page = parse(html)
    models = client.get("/v1/models").json()["data"]
    assert page.model_options == [m["id"] for m in models if not m.get("alias_of")]
    assert page.model_options == ["tiny-ltx2"]
    assert f'data-prompt-limit="{PROMPT_LIMIT}"' in html
    assert f"0 / {PROMPT_LIMIT}" in html
    expected = {"api-key", "prompt", "negative-prompt", "cfg-scale", "seed", "model"}
    assert expected | {"generate-audio", "job-status", "result-video", "gallery"} <= page.ids


def test_the_kling_aliases_are_named_in_a_hint_not_offered_as_models(client: TestClient) -> None:
    html = client.get("/").text
    assert not any("kling" in option for option in parse(html).model_options)
    assert f"one of {len(KLING_ALIASES)} Kling model ids" in html
    assert f"<code>{KLING_ALIASES[0]}</code>" in html


def test_the_page_has_cancel_delete_and_details_controls(client: TestClient) -> None:
    page = parse(client.get("/").text)
    controls = {"job-cancel", "details", "details-video", "details-timings", "details-download"}
    assert controls | {"details-rerun", "details-cancel", "details-delete"} <= page.ids
    assert {"details-confirm", "details-delete-confirm", "details-delete-keep"} <= page.ids


def test_the_key_field_is_described_by_its_hint_and_has_an_alert_for_errors(
    client: TestClient,
) -> None:
    html = client.get("/").text
    assert 'aria-describedby="signin-hint"' in html
    assert '<p id="signin-error" class="error field-error" role="alert" hidden>' in html


def test_the_page_has_every_contract_field(client: TestClient) -> None:
    html = client.get("/").text
    for value in ("16:9", "9:16", "1:1"):
        assert f'name="aspect_ratio" value="{value}"' in html
    for value in (5, 10):
        assert f'name="duration" value="{value}"' in html
    assert 'type="range" min="0" max="1"' in html


@pytest.mark.parametrize(("name", "media_type"), sorted(STATIC_TYPES.items()))
def test_static_files_are_served_with_their_types(
    client: TestClient, name: str, media_type: str
) -> None:
    response = client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (STATIC_DIR / name).read_bytes()


@pytest.mark.parametrize("name", ["nope.js", "..%2Fplayground.py", "playground.py"])
def test_unknown_static_files_are_404_in_the_envelope(client: TestClient, name: str) -> None:
    response = client.get(f"/static/{name}")
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404


def test_the_page_and_its_assets_reference_no_external_urls(client: TestClient) -> None:
    bodies = [client.get("/").text] + [client.get(f"/static/{n}").text for n in STATIC_TYPES]
    for body in bodies:
        # The SVG's XML namespace is an identifier, never fetched.
        found = set(EXTERNAL_URL.findall(body)) - {"http://www.w3.org"}
        assert not found, found


def test_the_script_never_writes_html_and_keeps_the_key_in_session_storage() -> None:
    script = (STATIC_DIR / "playground.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
    assert "sessionStorage" in script
    assert "localStorage" not in script
    assert "document.cookie" not in script


def _root_colors() -> dict[str, str]:
    css = (STATIC_DIR / "playground.css").read_text()
    root = css[css.index(":root {") : css.index("}", css.index(":root {"))]
    return dict(re.findall(r"--([a-z0-9-]+):\s*(#[0-9a-f]{6});", root))


def _luminance(color: str) -> float:
    channels = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    high, low = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# (text, background) pairs of the stylesheet's colors as the page uses them.
TEXT_ON_BACKGROUND = [
    ("on-accent", "accent"),  # the primary button, a checked chip
    ("on-accent", "accent-hover"),
    ("on-bad", "bad-solid"),  # the confirmed delete
    *[(text, "panel") for text in ("text", "label", "muted", "accent", "ok", "warn", "bad")],
    *[(text, "panel-2") for text in ("text", "muted", "placeholder", "bad-text", "warn", "bad")],
    ("muted", "bg"),
]


@pytest.mark.parametrize(("text", "background"), TEXT_ON_BACKGROUND)
def test_text_colors_meet_wcag_aa(text: str, background: str) -> None:
    colors = _root_colors()
    assert contrast(colors[text], colors[background]) >= 4.5


def test_the_primary_button_uses_the_accessible_pair() -> None:
    css = (STATIC_DIR / "playground.css").read_text()
    rule = css[css.index("button.primary {") : css.index("}", css.index("button.primary {"))]
    assert "background: var(--accent);" in rule
    assert "color: var(--on-accent);" in rule


def test_the_page_escapes_what_it_renders() -> None:
    html = render_page([{"id": "<script>x</script>", "description": "d"}])
    assert "<script>x</script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html


def test_a_public_url_on_another_origin_may_serve_the_media() -> None:
    csp = content_security_policy(("https://cdn.example.test",))
    assert "media-src 'self' https://cdn.example.test" in csp
    assert "connect-src 'self';" in csp


def test_the_page_lets_players_load_from_where_download_links_point(settings: Settings) -> None:
    behind_proxy = settings.model_copy(update={"public_url": "https://media.example.test/kinema"})
    with TestClient(create_app(behind_proxy)) as client:
        csp = client.get("/").headers["content-security-policy"]
    assert "media-src 'self' https://media.example.test;" in csp
    assert "img-src 'self' https://media.example.test;" in csp
