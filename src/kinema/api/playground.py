"""The web playground at `/`: a server-rendered page plus its static script, styles and icon.

The page needs no auth (the API key is typed into it and kept in the tab's sessionStorage); every
API call it makes carries that key as a Bearer token. A strict Content-Security-Policy allows only
this origin for scripts, styles, media and connections, so the page runs no inline script and
loads nothing from the internet.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from kinema import __version__
from kinema.api.deps import base_url, services
from kinema.catalog.registry import ASPECT_RATIOS
from kinema.contracts.aimlapi import PROMPT_LIMIT
from kinema.errors import NotFound

STATIC_DIR = Path(__file__).parent / "static"
STATIC_ROUTE = "/static"
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
DURATIONS = (5, 10)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class StaticFile:
    path: Path
    media_type: str
    digest: str


@cache
def static_files() -> dict[str, StaticFile]:
    """The files the playground serves, by name: a fixed list read once, nothing else on disk."""
    found = {}
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file() and path.suffix in MEDIA_TYPES:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            found[path.name] = StaticFile(path, MEDIA_TYPES[path.suffix], digest)
    return found


def static_url(name: str) -> str:
    """A cache-busting URL: it changes whenever the file does."""
    return f"{STATIC_ROUTE}/{name}?v={static_files()[name].digest}"


def content_security_policy(media_origins: tuple[str, ...] = ()) -> str:
    media = " ".join(("'self'", *media_origins))
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {media}",
            f"media-src {media}",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def media_origins(request: Request) -> tuple[str, ...]:
    """Where the players' videos and thumbnails come from: the download links' origin (the
    public URL, or an S3 endpoint's presigned URLs), which need not be the page's."""
    sample = services(request).artifacts.url("playground/origin", base_url(request), 60)
    origin = _origin(sample)
    return (origin,) if origin and origin != _origin(str(request.base_url)) else ()


def _model_option(entry: dict[str, Any]) -> str:
    model_id = escape(str(entry["id"]))
    title = escape(str(entry.get("description") or ""))
    return f'<option value="{model_id}" title="{title}">{model_id}</option>'


def served_entries(catalog: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The models (and presets) a deployment serves, without the ids that only alias them."""
    return [entry for entry in catalog if not entry.get("alias_of")]


def alias_hint(catalog: list[dict[str, Any]]) -> str:
    aliases = [entry for entry in catalog if entry.get("alias_of")]
    if not aliases:
        return ""
    example = escape(str(aliases[0]["id"]))
    target = escape(str(aliases[0]["alias_of"]))
    return (
        f"API clients may also name one of {len(aliases)} Kling model ids "
        f"(such as <code>{example}</code>); they run <code>{target}</code>."
    )


def _radios(name: str, values: tuple[Any, ...], suffix: str = "") -> str:
    return "".join(
        f'<label class="chip"><input type="radio" name="{name}" value="{escape(str(v))}"'
        f"{' checked' if i == 0 else ''}><span>{escape(str(v))}{suffix}</span></label>"
        for i, v in enumerate(values)
    )


def render_page(catalog: list[dict[str, Any]], prompt_limit: int = PROMPT_LIMIT) -> str:
    """The playground's HTML; the served models and the contract's limits are baked in."""
    served = served_entries(catalog)
    return PAGE.format(
        version=escape(__version__),
        prompt_limit=prompt_limit,
        css=static_url("playground.css"),
        js=static_url("playground.js"),
        icon=static_url("favicon.svg"),
        model_options="".join(_model_option(e) for e in served),
        model_description=escape(str(served[0].get("description") or "")) if served else "",
        alias_hint=alias_hint(catalog),
        aspect_ratios=_radios("aspect_ratio", ASPECT_RATIOS),
        durations=_radios("duration", DURATIONS, " s"),
    )


@router.get("/", response_class=HTMLResponse)
def playground(request: Request) -> HTMLResponse:
    app = services(request)
    headers = {
        **SECURITY_HEADERS,
        "Content-Security-Policy": content_security_policy(media_origins(request)),
        "Cache-Control": "no-cache",
    }
    return HTMLResponse(render_page(app.jobs.served.catalog()), headers=headers)


@router.get(f"{STATIC_ROUTE}/{{name}}")
def static(name: str) -> FileResponse:
    found = static_files().get(name)
    if found is None:
        raise NotFound(f"no static file {name!r}")
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    return FileResponse(found.path, media_type=found.media_type, headers=headers)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark">
<title>kinema playground</title>
<link rel="icon" type="image/svg+xml" href="{icon}">
<link rel="stylesheet" href="{css}">
<script src="{js}" defer></script>
</head>
<body data-prompt-limit="{prompt_limit}">
<header class="topbar">
  <div class="brand"><img src="{icon}" alt="" width="28" height="28">
    <span class="name">kinema</span><span class="sub">playground</span></div>
  <div id="account" class="account" hidden>
    <span class="muted signed-in">Signed in with</span>
    <code id="account-key" title="your API key, shortened"></code>
    <button type="button" id="sign-out" class="ghost">Sign out</button>
  </div>
</header>
<main>
<section id="signin" class="card signin">
  <h1>Sign in</h1>
  <form id="signin-form" autocomplete="off" novalidate>
    <label for="api-key">API key</label>
    <div class="row">
      <input id="api-key" name="api_key" type="password" autocomplete="off" spellcheck="false"
        placeholder="kin_…" required aria-describedby="signin-hint">
      <button type="submit" id="sign-in" class="primary">Sign in</button>
    </div>
    <p id="signin-error" class="error field-error" role="alert" hidden></p>
    <p id="signin-hint" class="muted small">The key stays in this tab's session storage only
      and is sent to this server as a Bearer token. <code>kinema keys create</code> makes
      one.</p>
  </form>
</section>
<div id="app" hidden>
<div class="workspace">
<section class="card">
  <h2>New video</h2>
  <form id="generate-form" novalidate>
    <div class="field">
      <div class="label-row"><label for="prompt">Prompt</label>
        <span id="prompt-counter" class="counter" aria-live="polite">0 / {prompt_limit}</span></div>
      <textarea id="prompt" name="prompt" rows="5" required
        placeholder="a red fox trotting through fresh snow, the crunch of snow"></textarea>
    </div>
    <div class="field">
      <div class="label-row"><label for="negative-prompt">Negative prompt
        <span class="muted">(optional)</span></label>
        <span id="negative-counter" class="counter">0 / {prompt_limit}</span></div>
      <textarea id="negative-prompt" name="negative_prompt" rows="2"
        placeholder="blurry, low quality, distorted"></textarea>
    </div>
    <div class="grid2">
      <fieldset class="field"><legend>Aspect ratio</legend>
        <div class="chips">{aspect_ratios}</div></fieldset>
      <fieldset class="field"><legend>Duration</legend>
        <div class="chips">{durations}</div></fieldset>
    </div>
    <div class="grid2">
      <div class="field">
        <div class="label-row"><label for="cfg-scale">CFG scale</label>
          <output id="cfg-value" for="cfg-scale">0.50</output></div>
        <input id="cfg-scale" name="cfg_scale" type="range" min="0" max="1" step="0.05"
          value="0.5">
      </div>
      <div class="field">
        <label for="seed">Seed <span class="muted">(optional)</span></label>
        <input id="seed" name="seed" type="number" min="0" max="4294967295" step="1"
          inputmode="numeric" placeholder="random">
      </div>
    </div>
    <div class="grid2">
      <div class="field">
        <label for="model">Model</label>
        <select id="model" name="model" aria-describedby="model-description">
          {model_options}</select>
        <p id="model-description" class="hint">{model_description}</p>
      </div>
      <div class="field check">
        <label><input id="generate-audio" name="generate_audio" type="checkbox" checked>
          Generate audio</label>
      </div>
    </div>
    <p id="model-aliases" class="hint">{alias_hint}</p>
    <div id="form-error" class="error" role="alert" hidden>
      <p id="form-error-message"></p><ul id="form-error-fields"></ul></div>
    <button type="submit" id="generate" class="primary">Generate</button>
  </form>
</section>
<section class="card" id="current" aria-labelledby="current-title">
  <h2 id="current-title">Current generation</h2>
  <p id="current-empty" class="muted">Submit a prompt to see its progress here.</p>
  <div id="current-job" hidden>
    <div class="status-line">
      <span id="job-status" class="badge"></span>
      <span id="job-stage" class="muted"></span>
      <button type="button" id="job-cancel" class="small danger" hidden>Cancel</button>
    </div>
    <div class="progress-row">
      <progress id="job-progress-bar" max="100" value="0" aria-label="Progress"></progress>
      <span id="job-progress" class="mono">0%</span>
    </div>
    <p id="job-prompt" class="job-prompt"></p>
    <p class="muted small">id <code id="job-id"></code> · <span id="job-elapsed"></span>
      · <span id="job-transport"></span></p>
    <p id="job-error" class="error" role="alert" hidden></p>
    <div id="job-result" hidden>
      <video id="result-video" controls playsinline preload="metadata"></video>
      <div class="result-actions">
        <a id="result-download" class="button" download>Download mp4</a>
        <button type="button" id="result-details" class="ghost">Details</button>
      </div>
      <dl id="result-meta" class="meta"></dl>
    </div>
  </div>
</section>
</div>
<section id="gallery-section" aria-labelledby="gallery-title">
  <div class="section-head">
    <h2 id="gallery-title">Your generations</h2>
    <button type="button" id="gallery-refresh" class="ghost">Refresh</button>
  </div>
  <p id="gallery-status" class="muted" role="status"></p>
  <div id="gallery" class="gallery"></div>
  <div class="more"><button type="button" id="gallery-more" class="ghost" hidden>Load more</button>
  </div>
</section>
</div>
</main>
<dialog id="details" class="details" aria-labelledby="details-title">
  <div class="details-head">
    <h2 id="details-title">Generation details</h2>
    <button type="button" id="details-close" class="ghost small" aria-label="Close">Close</button>
  </div>
  <div class="details-body">
    <div class="details-media">
      <video id="details-video" controls playsinline preload="metadata" hidden></video>
      <div id="details-placeholder" class="placeholder" hidden></div>
    </div>
    <div class="details-info">
      <div class="status-line"><span id="details-status" class="badge"></span>
        <span id="details-stage" class="muted"></span></div>
      <p id="details-prompt" class="details-prompt"></p>
      <p id="details-error" class="error" hidden></p>
      <dl id="details-params" class="meta"></dl>
      <h3 id="details-timings-title">Timings</h3>
      <dl id="details-timings" class="meta" aria-labelledby="details-timings-title"></dl>
    </div>
  </div>
  <div class="details-actions">
    <a id="details-download" class="button" download hidden>Download mp4</a>
    <button type="button" id="details-rerun">Re-run</button>
    <button type="button" id="details-cancel" class="danger" hidden>Cancel generation</button>
    <button type="button" id="details-delete" class="danger">Delete</button>
  </div>
  <div id="details-confirm" class="confirm" role="group" aria-labelledby="details-confirm-text"
    hidden>
    <p id="details-confirm-text">Delete this video and its files? This cannot be undone.</p>
    <button type="button" id="details-delete-confirm" class="danger solid">Delete for good</button>
    <button type="button" id="details-delete-keep" class="ghost">Keep it</button>
  </div>
  <p id="details-message" class="error" role="alert" hidden></p>
</dialog>
<footer class="muted small">kinema {version} · AI/ML API video contract ·
  <code>POST /v2/video/generations</code></footer>
</body>
</html>
"""
