"""The web playground at `/`: a server-rendered page plus its static script, styles and icon.

The page needs no auth (the API key is typed into it and kept in the tab's sessionStorage); every
API call it makes carries that key as a Bearer token. A strict Content-Security-Policy allows only
this origin for scripts, styles, media and connections, so the page runs no inline script and
loads nothing from the internet.

The page carries what the served models make (whole seconds from min to max, the sizes, whether
they take images) in the form's `data-models` attribute and the image size limit in the body's
`data-image-limit`. A picked image is checked and read in the browser (a data URI for the
request) and previewed on a canvas from `createImageBitmap`, so neither `blob:` nor `data:` has to
be allowed as an image source.
"""

from __future__ import annotations

import hashlib
import json
import math
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
from kinema.catalog.loras import MAX_LORAS, MAX_SCALE, MIN_SCALE, offered
from kinema.catalog.registry import ASPECT_RATIOS, ModelSpec, get_spec
from kinema.config import Settings
from kinema.contracts.aimlapi import PROMPT_LIMIT, nearest_aspect_ratio
from kinema.errors import ModelUnavailable, NotFound

STATIC_DIR = Path(__file__).parent / "static"
STATIC_ROUTE = "/static"
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
DURATIONS = (5, 10)
# OpenAI's video sizes, offered besides a model's native ones where the model can make them.
OPENAI_SIZES = ((1280, 720), (1792, 1024), (720, 1280), (1024, 1792))
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
IMAGE_LIMIT = int(Settings.model_fields["input_max_bytes"].default)
EXTEND_SECONDS = 4
TIMES = "\N{MULTIPLICATION SIGN}"
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


WAITING = "no live worker: its jobs wait until one starts"


def workers_text(entry: dict[str, Any]) -> str:
    """How many workers make the model's jobs now ("" where the server could not say)."""
    live = entry.get("live_workers")
    if not isinstance(live, int):
        return ""
    return "no live worker" if live == 0 else f"{live} live worker{'' if live == 1 else 's'}"


def waiting_text(entry: dict[str, Any]) -> str:
    """The warning under the model list when no worker makes the chosen model's jobs."""
    return WAITING if entry.get("live_workers") == 0 else ""


def _model_option(entry: dict[str, Any]) -> str:
    model_id = escape(str(entry["id"]))
    title = escape(str(entry.get("description") or ""))
    workers = workers_text(entry)
    label = f"{model_id} · {escape(workers)}" if workers else model_id
    waiting = ' data-waiting="1"' if waiting_text(entry) else ""
    return f'<option value="{model_id}" title="{title}"{waiting}>{label}</option>'


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
        f"API clients may also name one of {len(aliases)} hosted model ids (Kling, LTX) "
        f"(such as <code>{example}</code>); they run the served model, e.g. <code>{target}</code>."
    )


def _radios(name: str, values: tuple[Any, ...], suffix: str = "", checked: Any = None) -> str:
    chosen = values[0] if checked is None else checked
    return "".join(
        f'<label class="chip"><input type="radio" name="{name}" value="{escape(str(v))}"'
        f"{' checked' if v == chosen else ''}><span>{escape(str(v))}{suffix}</span></label>"
        for v in values
    )


def _makes(spec: ModelSpec, width: int, height: int) -> bool:
    """Whether `check_request` lets `spec` make a width x height clip."""
    return (
        width % 2 == 0
        and height % 2 == 0
        and min(width, height) >= spec.min_side
        and max(width, height) <= spec.max_side
        and width * height <= spec.max_pixels
    )


def size_choices(spec: ModelSpec) -> list[dict[str, Any]]:
    """The sizes the page offers for `spec`: its native size per aspect ratio, then OpenAI's
    sizes it can make, each with the aspect ratio it is nearest to."""
    sizes = [
        {"width": w, "height": h, "aspect_ratio": ratio, "native": True}
        for ratio in ASPECT_RATIOS
        if ratio in spec.output_sizes
        for w, h in (spec.output_sizes[ratio],)
    ]
    native = {(size["width"], size["height"]) for size in sizes}
    sizes += [
        {"width": w, "height": h, "aspect_ratio": nearest_aspect_ratio(w, h), "native": False}
        for w, h in OPENAI_SIZES
        if (w, h) not in native and _makes(spec, w, h)
    ]
    return sizes


def model_limits(model_id: str, lora_dir: Path | None = None) -> dict[str, Any] | None:
    """What the page lets a person ask `model_id` for (None for an id kinema has no spec of):
    whole seconds from `min_seconds` to `max_seconds`, the sizes, whether it takes images, and
    the LoRAs the deployment offers for it."""
    try:
        spec = get_spec(model_id)
    except ModelUnavailable:
        return None
    low = max(1, math.ceil(spec.min_seconds))
    return {
        "min_seconds": low,
        "max_seconds": max(low, math.floor(spec.max_seconds)),
        "fps": spec.fps,
        "sizes": size_choices(spec),
        "images": bool(spec.condition_pipeline),
        "loras": list(offered(lora_dir, spec.loras_folder)),
    }


def _size_option(size: dict[str, Any], selected: bool) -> str:
    value = f"{size['width']}x{size['height']}"
    native = " (native)" if size["native"] else ""
    label = f"{size['width']}{TIMES}{size['height']} · {size['aspect_ratio']}{native}"
    flags = (' data-native="1"' if size["native"] else "") + (" selected" if selected else "")
    ratio = escape(size["aspect_ratio"])
    return f'<option value="{value}" data-ratio="{ratio}"{flags}>{escape(label)}</option>'


def _size_options(limits: dict[str, Any] | None) -> str:
    if not limits or not limits["sizes"]:
        return '<option value="">the model\'s size</option>'
    sizes = limits["sizes"]
    first = next((s for s in sizes if s["aspect_ratio"] == ASPECT_RATIOS[0]), sizes[0])
    return "".join(_size_option(size, size is first) for size in sizes)


def _seconds_hint(model_id: str, limits: dict[str, Any] | None) -> str:
    if not limits:
        return ""
    return (
        f"{escape(model_id)} makes {limits['min_seconds']} to {limits['max_seconds']} s "
        f"at {limits['fps']:g} fps."
    )


def decimal_size(size: int) -> str:
    """Bytes in decimal units to three significant digits, as the page's script writes them."""
    for unit, scale in (("MB", 1_000_000), ("kB", 1000)):
        if size >= scale:
            return f"{float(f'{size / scale:.3g}'):g} {unit}"
    return f"{size} B"


FRAME_PICKER = """<div class="frame" id="{slot}-frame" data-slot="{slot}">
        <input type="file" id="{slot}-frame-file" class="file-input" accept="{accept}"
          aria-describedby="{slot}-frame-hint {slot}-frame-error">
        <label for="{slot}-frame-file" id="{slot}-frame-drop" class="drop">
          <span class="drop-title">{title}</span>
          <span class="drop-text">Drop an image here or
            <span class="link">choose a file</span></span>
          <span id="{slot}-frame-hint" class="drop-hint">JPEG, PNG or WebP, up to {limit}</span>
        </label>
        <figure id="{slot}-frame-preview" class="preview" hidden>
          <div class="preview-box"><canvas id="{slot}-frame-canvas" role="img"
            aria-label="{title} preview"></canvas></div>
          <figcaption><span class="preview-text"><span class="preview-title">{title}</span>
            <span id="{slot}-frame-name" class="preview-name muted"></span></span>
            <button type="button" id="{slot}-frame-remove" class="ghost small"
              aria-label="Remove the {lower}">Remove</button></figcaption>
        </figure>
        <p id="{slot}-frame-error" class="error field-error" role="alert" hidden></p>
      </div>"""


def _frame_picker(slot: str, title: str, image_limit: int) -> str:
    return FRAME_PICKER.format(
        slot=slot,
        title=title,
        lower=title.lower(),
        accept=",".join(IMAGE_TYPES),
        limit=decimal_size(image_limit),
    )


def render_page(
    catalog: list[dict[str, Any]],
    prompt_limit: int = PROMPT_LIMIT,
    image_limit: int = IMAGE_LIMIT,
    lora_dir: Path | None = None,
) -> str:
    """The playground's HTML; the served models, their limits and the contract's are baked in."""
    served = served_entries(catalog)
    limits = {
        str(e["id"]): found for e in served if (found := model_limits(str(e["id"]), lora_dir))
    }
    first_id = str(served[0]["id"]) if served else ""
    first = limits.get(first_id)
    low, high = (first["min_seconds"], first["max_seconds"]) if first else (1, max(DURATIONS))
    seconds = min(max(DURATIONS[0], low), high)
    durations = tuple(d for d in DURATIONS if low <= d <= high) or (seconds,)
    return PAGE.format(
        version=escape(__version__),
        prompt_limit=prompt_limit,
        image_limit=image_limit,
        css=static_url("playground.css"),
        js=static_url("playground.js"),
        icon=static_url("favicon.svg"),
        model_limits=escape(json.dumps(limits, separators=(",", ":"))),
        model_options="".join(_model_option(e) for e in served),
        model_description=escape(str(served[0].get("description") or "")) if served else "",
        model_workers=escape(waiting_text(served[0])) if served else "",
        alias_hint=alias_hint(catalog),
        aspect_ratios=_radios("aspect_ratio", ASPECT_RATIOS),
        durations=_radios("duration", durations, " s", seconds),
        seconds_min=low,
        seconds_max=high,
        seconds=seconds,
        seconds_hint=_seconds_hint(first_id, first),
        size_options=_size_options(first),
        frames_hidden="" if first is None or first["images"] else " hidden",
        first_frame=_frame_picker("first", "First frame", image_limit),
        last_frame=_frame_picker("last", "Last frame", image_limit),
        extend_seconds=min(max(EXTEND_SECONDS, low), high),
        max_loras=MAX_LORAS,
        min_scale=f"{MIN_SCALE:g}",
        max_scale=f"{MAX_SCALE:g}",
    )


@router.get("/", response_class=HTMLResponse)
def playground(request: Request) -> HTMLResponse:
    app = services(request)
    headers = {
        **SECURITY_HEADERS,
        "Content-Security-Policy": content_security_policy(media_origins(request)),
        "Cache-Control": "no-cache",
    }
    catalog = app.jobs.served_catalog(app.settings.worker_liveness_seconds)
    settings = app.settings
    page = render_page(catalog, image_limit=settings.input_max_bytes, lora_dir=settings.lora_dir)
    return HTMLResponse(page, headers=headers)


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
<body data-prompt-limit="{prompt_limit}" data-image-limit="{image_limit}">
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
  <form id="generate-form" novalidate data-models="{model_limits}">
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
    <fieldset id="frames" class="field"{frames_hidden}>
      <legend>Start and end images <span class="muted">(optional)</span></legend>
      <div class="frames">
      {first_frame}
      {last_frame}
      </div>
    </fieldset>
    <div class="grid2">
      <fieldset class="field"><legend>Aspect ratio</legend>
        <div class="chips">{aspect_ratios}</div></fieldset>
      <div class="field">
        <label for="size">Size</label>
        <select id="size" name="size">{size_options}</select>
      </div>
    </div>
    <fieldset class="field" id="duration-field"><legend>Duration</legend>
      <div class="length-row">
        <div class="chips">{durations}</div>
        <input id="seconds" name="seconds" type="range" min="{seconds_min}" max="{seconds_max}"
          step="1" value="{seconds}" aria-label="Duration in seconds"
          aria-describedby="seconds-hint">
        <output id="seconds-value" for="seconds">{seconds} s</output>
      </div>
      <p id="seconds-hint" class="hint">{seconds_hint}</p>
    </fieldset>
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
        <select id="model" name="model" aria-describedby="model-description model-workers">
          {model_options}</select>
        <p id="model-description" class="hint">{model_description}</p>
        <p id="model-workers" class="hint">{model_workers}</p>
      </div>
      <div class="field check">
        <label><input id="generate-audio" name="generate_audio" type="checkbox" checked>
          Generate audio</label>
        <label title="The model rewrites the prompt in detail before it makes the clip"><input
          id="enhance-prompt" name="enhance_prompt" type="checkbox"> Enhance prompt</label>
      </div>
    </div>
    <fieldset id="loras" class="field loras" hidden data-max="{max_loras}"
      data-min-scale="{min_scale}" data-max-scale="{max_scale}">
      <legend>LoRAs <span class="muted">(up to {max_loras}, each at a scale from {min_scale}
        to {max_scale})</span></legend>
      <div id="lora-list" class="lora-list"></div>
    </fieldset>
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
    <p id="job-origin" class="muted small" hidden></p>
    <p class="muted small">id <code id="job-id"></code> · <span id="job-elapsed"></span>
      · <span id="job-transport"></span></p>
    <p id="job-error" class="error" role="alert" hidden></p>
    <div id="job-result" hidden>
      <video id="result-video" controls playsinline preload="metadata"></video>
      <div class="result-actions">
        <a id="result-download" class="button" download>Download mp4</a>
        <button type="button" id="result-details" class="ghost">Details</button>
      </div>
      <form id="extend-form" class="extend" novalidate>
        <label for="extend-seconds">Extend this clip by</label>
        <input id="extend-seconds" name="extend_seconds" type="number" min="1"
          max="{seconds_max}" step="1" value="{extend_seconds}" inputmode="numeric"
          aria-describedby="extend-hint">
        <span class="unit">s</span>
        <button type="submit" id="extend">Extend</button>
        <p id="extend-hint" class="hint">A new, longer clip that continues this one from its
          last frames.</p>
      </form>
      <p id="extend-error" class="error" role="alert" hidden></p>
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
    <form id="details-extend-form" class="extend inline" novalidate hidden>
      <label for="details-extend-seconds">Extend by</label>
      <input id="details-extend-seconds" name="extend_seconds" type="number" min="1"
        max="{seconds_max}" step="1" value="{extend_seconds}" inputmode="numeric">
      <span class="unit">s</span>
      <button type="submit" id="details-extend">Extend</button>
    </form>
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
