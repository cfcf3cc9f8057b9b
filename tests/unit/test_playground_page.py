"""The web playground's page and static files, through the real ASGI app (no browser)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kinema.api import playground
from kinema.api.playground import (
    OPENAI_SIZES,
    STATIC_DIR,
    content_security_policy,
    model_limits,
    render_page,
    size_choices,
)
from kinema.catalog.registry import HOSTED_ALIASES, KLING_ALIASES, TINY_LTX2, ModelSpec
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
        self.options: dict[str, list[str]] = {}  # option values by their select's id
        self.attributes: dict[str, dict[str, str | None]] = {}  # by id
        self._in_script = False
        self._select = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
            self.attributes[str(found["id"])] = found
        self.style_attributes += "style" in found
        self.handler_attributes += [name for name in found if name.startswith("on")]
        if tag == "script":
            self.scripts.append(found)
            self._in_script = True
        if tag == "select":
            self._select = str(found.get("id"))
        if tag == "option":
            self.options.setdefault(self._select, []).append(str(found.get("value")))
            if self._select == "model":
                self.model_options.append(str(found.get("value")))

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"
        self._select = "" if tag == "select" else self._select

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
    assert [str(s.get("src")).split("?")[0] for s in page.scripts] == ["/static/playground.js"]


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
    assert f"one of {len(HOSTED_ALIASES)} hosted model ids" in html
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
    for seconds in (5, 10):
        assert f'name="duration" value="{seconds}"' in html
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


def test_the_page_renders_the_served_models_limits(client: TestClient, settings: Settings) -> None:
    html = client.get("/").text
    page = parse(html)
    limits = json.loads(str(page.attributes["generate-form"]["data-models"]))
    assert limits == {"tiny-ltx2": model_limits("tiny-ltx2")}
    tiny = limits["tiny-ltx2"]
    assert (tiny["min_seconds"], tiny["max_seconds"]) == (1, 20)
    assert tiny["images"] is True
    seconds = page.attributes["seconds"]
    assert (seconds["type"], seconds["min"], seconds["max"], seconds["step"]) == (
        "range",
        "1",
        "20",
        "1",
    )
    assert seconds["value"] == "5"
    assert "tiny-ltx2 makes 1 to 20 s at 24 fps." in html
    assert page.attributes["extend-seconds"]["value"] == "4"
    assert page.attributes["extend-seconds"]["max"] == "20"
    # The page's image limit is the server's.
    assert f'data-image-limit="{settings.input_max_bytes}"' in html
    assert "JPEG, PNG or WebP, up to 100 kB" in html


def test_the_size_choice_offers_the_native_sizes_then_openais(client: TestClient) -> None:
    page = parse(client.get("/").text)
    native = ["96x54", "54x96", "64x64"]
    openai = [f"{w}x{h}" for w, h in OPENAI_SIZES]
    assert page.options["size"] == native + openai
    limits = model_limits("tiny-ltx2")
    assert limits is not None
    sizes = {f"{s['width']}x{s['height']}": s for s in limits["sizes"]}
    assert sizes["1792x1024"]["aspect_ratio"] == "16:9"
    assert sizes["720x1280"]["aspect_ratio"] == "9:16"
    assert [value for value, size in sizes.items() if size["native"]] == native


def test_only_the_sizes_a_model_can_make_are_offered() -> None:
    small = replace(TINY_LTX2, max_side=1280, max_pixels=1280 * 720)
    offered = [(s["width"], s["height"]) for s in size_choices(small)]
    assert (1280, 720) in offered and (720, 1280) in offered
    assert (1792, 1024) not in offered and (1024, 1792) not in offered
    tiny_only = replace(TINY_LTX2, max_side=128, max_pixels=128 * 128)
    assert [s["native"] for s in size_choices(tiny_only)] == [True, True, True]


def test_the_page_has_image_length_size_and_extend_controls(client: TestClient) -> None:
    page = parse(client.get("/").text)
    for slot in ("first", "last"):
        ids = {f"{slot}-frame-{part}" for part in ("file", "drop", "preview", "remove", "error")}
        assert ids | {f"{slot}-frame-canvas", f"{slot}-frame-name"} <= page.ids
        picker = page.attributes[f"{slot}-frame-file"]
        assert picker["type"] == "file"
        assert picker["accept"] == "image/jpeg,image/png,image/webp"
        assert "hidden" in page.attributes[f"{slot}-frame-preview"]
    assert "hidden" not in page.attributes["frames"]  # tiny-ltx2 takes images
    controls = {"size", "seconds", "seconds-value", "extend-form", "extend-seconds", "extend"}
    assert controls | {
        "extend-error",
        "job-origin",
        "details-extend",
        "details-extend-seconds",
    } <= (page.ids)


def _with_spec(monkeypatch: pytest.MonkeyPatch, spec: ModelSpec) -> str:
    monkeypatch.setattr(playground, "get_spec", lambda model_id: spec)
    return render_page([{"id": spec.id, "description": "d"}])


def test_a_text_only_model_gets_no_image_pickers(monkeypatch: pytest.MonkeyPatch) -> None:
    page = parse(_with_spec(monkeypatch, replace(TINY_LTX2, condition_pipeline="")))
    assert "hidden" in page.attributes["frames"]


def test_the_length_controls_follow_the_models_range(monkeypatch: pytest.MonkeyPatch) -> None:
    html = _with_spec(monkeypatch, replace(TINY_LTX2, min_seconds=2.5, max_seconds=8.7))
    page = parse(html)
    assert (page.attributes["seconds"]["min"], page.attributes["seconds"]["max"]) == ("3", "8")
    assert 'name="duration" value="5" checked' in html
    assert 'name="duration" value="10"' not in html  # longer than the model makes
    assert page.attributes["extend-seconds"]["max"] == "8"


def test_a_model_kinema_has_no_spec_of_leaves_the_size_to_the_server() -> None:
    page = parse(render_page([{"id": "somebody-elses-model", "description": "d"}]))
    assert page.options["size"] == [""]
    assert json.loads(str(page.attributes["generate-form"]["data-models"])) == {}


def test_each_served_model_shows_its_live_workers() -> None:
    """As /v1/models counts them: a model nobody makes says its jobs wait; without a count (the
    database could not say) nothing is claimed."""
    html = render_page(
        [
            {"id": "tiny-ltx2", "description": "d", "live_workers": 0},
            {"id": "tiny-wan-2.2", "description": "d", "live_workers": 2},
            {"id": "tiny-kandinsky-6", "description": "d"},
        ]
    )
    assert 'data-waiting="1">tiny-ltx2 · no live worker</option>' in html
    assert ">tiny-wan-2.2 · 2 live workers</option>" in html
    assert ">tiny-kandinsky-6</option>" in html
    assert (
        '<p id="model-workers" class="hint">no live worker: its jobs wait until one starts</p>'
        in html
    )


def test_the_page_carries_the_loras_offered_for_each_model(tmp_path: Path) -> None:
    (tmp_path / "tiny-ltx2").mkdir()
    for name in ("grain", "glow"):
        (tmp_path / "tiny-ltx2" / f"{name}.safetensors").write_bytes(b"")
    offered = {
        (model, where is not None): (model_limits(model, where) or {}).get("loras")
        for model in ("tiny-ltx2", "tiny-wan-2.2")
        for where in (tmp_path, None)
    }
    assert offered == {
        ("tiny-ltx2", True): ["glow", "grain"],
        ("tiny-ltx2", False): [],
        ("tiny-wan-2.2", True): [],
        ("tiny-wan-2.2", False): [],
    }
    html = render_page([{"id": "tiny-ltx2", "description": "d"}], lora_dir=tmp_path)
    assert "&quot;loras&quot;:[&quot;glow&quot;,&quot;grain&quot;]" in html
    assert 'id="loras"' in html and 'data-max="4"' in html
