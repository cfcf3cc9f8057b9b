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
from kinema.api.schemas import PROMPT_LIMIT
from kinema.engine.registry import ASPECT_RATIOS
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
    alias_of = entry.get("alias_of")
    label = f"{model_id} → {escape(str(alias_of))}" if alias_of else model_id
    return f'<option value="{model_id}">{label}</option>'


def _radios(name: str, values: tuple[Any, ...], suffix: str = "") -> str:
    return "".join(
        f'<label class="chip"><input type="radio" name="{name}" value="{escape(str(v))}"'
        f"{' checked' if i == 0 else ''}><span>{escape(str(v))}{suffix}</span></label>"
        for i, v in enumerate(values)
    )


def render_page(catalog: list[dict[str, Any]], prompt_limit: int = PROMPT_LIMIT) -> str:
    """The playground's HTML; the served models and the contract's limits are baked in."""
    return PAGE.format(
        version=escape(__version__),
        prompt_limit=prompt_limit,
        css=static_url("playground.css"),
        js=static_url("playground.js"),
        icon=static_url("favicon.svg"),
        model_options="".join(_model_option(e) for e in catalog),
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
    <span class="muted">Key</span> <code id="account-key"></code>
    <button type="button" id="sign-out" class="ghost">Sign out</button>
  </div>
</header>
<main>
<section id="signin" class="card signin">
  <h1>Sign in</h1>
  <p class="muted">Enter a kinema API key. It stays in this tab's session storage only and is sent
  to this server as a Bearer token.</p>
  <form id="signin-form" autocomplete="off" novalidate>
    <label for="api-key">API key</label>
    <div class="row">
      <input id="api-key" name="api_key" type="password" autocomplete="off" spellcheck="false"
        placeholder="kin_…" required>
      <button type="submit" id="sign-in">Sign in</button>
    </div>
    <p id="signin-error" class="error" role="alert" hidden></p>
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
        <select id="model" name="model">{model_options}</select>
      </div>
      <div class="field check">
        <label><input id="generate-audio" name="generate_audio" type="checkbox" checked>
          Generate audio</label>
      </div>
    </div>
    <div id="form-error" class="error" role="alert" hidden>
      <p id="form-error-message"></p><ul id="form-error-fields"></ul></div>
    <button type="submit" id="generate" class="primary">Generate</button>
  </form>
</section>
<section class="card" id="current">
  <h2>Current generation</h2>
  <p id="current-empty" class="muted">Submit a prompt to see its progress here.</p>
  <div id="current-job" hidden>
    <div class="status-line">
      <span id="job-status" class="badge"></span>
      <span id="job-stage" class="muted"></span>
      <span id="job-queue" class="muted"></span>
    </div>
    <div class="progress-row">
      <progress id="job-progress-bar" max="100" value="0"></progress>
      <span id="job-progress" class="mono">0%</span>
    </div>
    <p class="muted small">id <code id="job-id"></code> · <span id="job-elapsed"></span>
      · <span id="job-transport"></span></p>
    <p id="job-error" class="error" role="alert" hidden></p>
    <div id="job-result" hidden>
      <video id="result-video" controls playsinline preload="metadata"></video>
      <div class="result-actions">
        <a id="result-download" class="button" download>Download mp4</a>
      </div>
      <dl id="result-meta" class="meta"></dl>
    </div>
  </div>
</section>
</div>
<section id="gallery-section">
  <div class="section-head">
    <h2>Your generations</h2>
    <button type="button" id="gallery-refresh" class="ghost">Refresh</button>
  </div>
  <p id="gallery-status" class="muted"></p>
  <div id="gallery" class="gallery"></div>
  <div class="more"><button type="button" id="gallery-more" class="ghost" hidden>Load more</button>
  </div>
</section>
</div>
</main>
<footer class="muted small">kinema {version} · AI/ML API video contract ·
  <code>POST /v2/video/generations</code></footer>
</body>
</html>
"""
