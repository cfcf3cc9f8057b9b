"""Python clients for kinema and the hosted AI/ML API video contract (httpx, sync and async)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse, connect_sse

from kinema.errors import ClientError

DEFAULT_MODEL = "klingai/video-v2-6-pro-text-to-video"
# What `create` asks for when given an image and no model: the hosted API's Kling id whose body
# takes `image_url` / `tail_image_url` (a text-to-video id's body would leave them out).
IMAGE_TO_VIDEO_MODEL = "klingai/video-v2-6-pro-image-to-video"
CREATE_PATH = "/v2/video/generations"
EVENTS_PATH = "/v2/video/generations/events"
VIDEOS_PATH = "/v1/videos"  # the OpenAI-compatible videos API: list, retrieve, delete
EXTENSIONS_PATH = f"{VIDEOS_PATH}/extensions"
# The image formats a server takes, by the bytes each file starts with (WebP: RIFF....WEBP).
IMAGE_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))
# A server without the event stream (e.g. the hosted API) answers these; the client then polls.
NO_STREAM_STATUSES = frozenset({404, 405, 406, 501})
STREAM_TIMEOUT = httpx.Timeout(30.0, read=45.0)  # the server pings every 15 s
PENDING = frozenset({"queued", "generating"})


@dataclass(frozen=True)
class Video:
    url: str
    content_type: str
    file_name: str
    file_size: int
    duration: float
    width: int
    height: int
    fps: float
    has_audio: bool


@dataclass(frozen=True)
class Generation:
    id: str
    status: str
    progress: float = 0.0
    queue_position: int | None = None
    video: Video | None = None
    error: dict[str, str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status not in PENDING

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Generation:
        video = body.get("video")
        return cls(
            id=body["id"],
            status=body["status"],
            progress=float(body.get("progress") or 0.0),
            queue_position=body.get("queue_position"),
            video=Video(**{k: video[k] for k in Video.__dataclass_fields__}) if video else None,
            error=body.get("error"),
            meta=body.get("meta") or {},
        )


# /v1/videos statuses in /v2's words (`Generation.status`).
VIDEO_STATUSES = {
    "queued": "queued",
    "in_progress": "generating",
    "completed": "completed",
    "failed": "error",
}


def _created_generation(video: dict[str, Any]) -> Generation:
    """The `Generation` of a video object a create on /v1/videos answers (a remix or an
    extension): its id, status, progress and queue position, its error if it failed at once.
    Follow it with `get`/`wait`, which read /v2 and give the video once it is done."""
    error = video.get("error")
    return Generation(
        id=video["id"],
        status=VIDEO_STATUSES.get(video.get("status", ""), video.get("status", "")),
        progress=float(video.get("progress") or 0.0),
        queue_position=video.get("queue_position"),
        error={"name": str(error.get("code")), "message": str(error.get("message"))}
        if isinstance(error, dict)
        else None,
        meta={
            name: video.get(name)
            for name in ("model", "seed", "stage", "attempts")
            if name in video
        },
    )


@dataclass(frozen=True)
class VideoPage:
    """One page of `GET /v1/videos`: the video objects as the server sent them (dicts).

    The next page starts `after=last_id`, while `has_more`."""

    data: list[dict[str, Any]]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> VideoPage:
        return cls(
            data=list(body.get("data") or []),
            has_more=bool(body.get("has_more")),
            first_id=body.get("first_id"),
            last_id=body.get("last_id"),
        )


Order = Literal["asc", "desc"]
ProgressCallback = Callable[[Generation], None]
DownloadCallback = Callable[[int, int | None], None]  # (bytes received, size if known)


def poll_until_done(
    get: Callable[[], Generation],
    *,
    poll_interval: float,
    timeout: float | None,
    on_progress: ProgressCallback | None = None,
) -> Generation:
    """Call `get` until the generation is done, reporting each state to `on_progress`."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        generation = get()
        if on_progress:
            on_progress(generation)
        if generation.done:
            return generation
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"generation {generation.id} not done after {timeout} s")
        time.sleep(poll_interval)


ImageInput = Path | str | bytes
"""An image for `create`: a local file (a `Path`, or a `str` that is not a URL) or its bytes,
sent as a `data:` URI; an `http(s)://` URL or a `data:image/…;base64,` URI, sent as it is."""


def image_reference(image: ImageInput) -> str:
    """What a create body's `image_url` / `tail_image_url` holds for `image`."""
    if isinstance(image, str) and image.lower().startswith(("http://", "https://", "data:")):
        return image
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    name = "the image" if isinstance(image, bytes) else str(image)
    return f"data:{_image_media_type(data, name)};base64,{base64.b64encode(data).decode()}"


def _image_media_type(data: bytes, name: str) -> str:
    for signature, media_type in IMAGE_SIGNATURES:
        if data.startswith(signature):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise ValueError(f"{name} is not a PNG, JPEG or WebP image")


def _create_body(
    prompt: str,
    model: str | None,
    options: dict[str, Any],
    image: ImageInput | None = None,
    last_image: ImageInput | None = None,
) -> dict[str, Any]:
    given = {k: v for k, v in options.items() if v is not None}
    if image is not None:
        given["image_url"] = image_reference(image)
    if last_image is not None:
        given["tail_image_url"] = image_reference(last_image)
    if model is None:
        with_images = "image_url" in given or "tail_image_url" in given
        model = IMAGE_TO_VIDEO_MODEL if with_images else DEFAULT_MODEL
    return {"model": model, "prompt": prompt, **given}


def _extension_body(video_id: str, prompt: str, seconds: float) -> dict[str, Any]:
    """`seconds` as the text of a number ("4"), as the OpenAI SDK sends it."""
    return {"prompt": prompt, "seconds": f"{seconds:g}", "video": {"id": video_id}}


def _remix_path(video_id: str) -> str:
    return f"{_video_path(video_id)}/remix"


def _list_params(limit: int, after: str | None, order: Order) -> dict[str, str | int]:
    params: dict[str, str | int] = {"limit": limit, "order": order}
    if after is not None:
        params["after"] = after
    return params


def _video_path(video_id: str) -> str:
    return f"{VIDEOS_PATH}/{quote(video_id, safe='')}"


def _error_message(body: object, fallback: str) -> str:
    """The message of an error body in either shape: the hosted API's envelope
    (`{"message", "errors", ...}`) or OpenAI's (`{"error": {"message", "param", ...}}`)."""
    if not isinstance(body, dict):
        return fallback
    error = body.get("error")
    if "message" not in body and isinstance(error, dict) and error.get("message"):
        message, param = str(error["message"]), error.get("param")
        return f"{message} (param: {param})" if param and param not in message else message
    return str(body.get("message") or body.get("detail") or fallback)


def _checked(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        message = _error_message(body, response.text or response.reason_phrase)
        raise ClientError(response.status_code, message, body)
    return response.json()


def _download_size(response: httpx.Response) -> int | None:
    length = response.headers.get("content-length")
    return int(length) if length and length.isdigit() else None


def _video_url(target: Generation | str) -> str:
    if isinstance(target, str):
        return target
    if target.video is None:
        raise ClientError(409, f"generation {target.id} has no video (status {target.status})")
    return target.video.url


class _NoStream(Exception):
    """This server offers no event stream for the generation (or it ended early): poll instead."""


def _check_stream(response: httpx.Response) -> None:
    if response.status_code in NO_STREAM_STATUSES:
        raise _NoStream
    if response.status_code >= 400:
        _checked(response)
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        raise _NoStream


def _observe(
    event: ServerSentEvent, on_progress: ProgressCallback | None, deadline: float | None
) -> Generation | None:
    if deadline is not None and time.monotonic() >= deadline:
        raise TimeoutError("generation not done in time")
    if event.event not in ("progress", "completed", "error"):
        return None
    generation = Generation.from_json(json.loads(event.data))
    if on_progress:
        on_progress(generation)
    return generation


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _download_request(
    http: httpx.Client | httpx.AsyncClient, target: Generation | str
) -> httpx.Request:
    """Signed URLs need no key, and the key must not travel to another host (e.g. S3)."""
    request = http.build_request("GET", _video_url(target))
    request.headers.pop("Authorization", None)
    return request


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Client:
    """`Client(base_url, api_key)`: create (from a prompt, images optional), extend and remix,
    get, wait and download generations; list, retrieve and delete videos. `transport`
    replaces the network, e.g. `httpx.WSGITransport` or a test's `httpx.MockTransport`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def create(
        self,
        prompt: str,
        *,
        model: str | None = None,
        image: ImageInput | None = None,
        last_image: ImageInput | None = None,
        duration: float | None = None,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        **options: Any,
    ) -> Generation:
        """Queue a generation (`POST /v2/video/generations`). `image` is the first frame and
        `last_image` the last: a local file or bytes (sent as a data URI) or an http(s) URL.
        `model` defaults to DEFAULT_MODEL, or IMAGE_TO_VIDEO_MODEL with an image; kinema's own
        model ids also take any `duration` (seconds), `width` with `height`, and `fps`. Other
        fields (`aspect_ratio`, `seed`, `negative_prompt`, `loras=[{"name": …, "scale": …}]`,
        …) go in `options`; None is left out."""
        shape = {"duration": duration, "width": width, "height": height, "fps": fps}
        body = _create_body(prompt, model, {**shape, **options}, image, last_image)
        return Generation.from_json(_checked(self._http.post(CREATE_PATH, json=body)))

    def extend(self, video_id: str, prompt: str, seconds: float) -> Generation:
        """A completed video and `seconds` more, continued from its last frames, as one new
        (longer) video (`POST /v1/videos/extensions`); follow it with `wait`."""
        body = _extension_body(video_id, prompt, seconds)
        return _created_generation(_checked(self._http.post(EXTENSIONS_PATH, json=body)))

    def remix(self, video_id: str, prompt: str) -> Generation:
        """A new video from a completed one and a new prompt, keeping its shape, length, seed
        and motion (`POST /v1/videos/{id}/remix`); follow it with `wait`."""
        response = self._http.post(_remix_path(video_id), json={"prompt": prompt})
        return _created_generation(_checked(response))

    def get(self, generation_id: str) -> Generation:
        response = self._http.get(CREATE_PATH, params={"generation_id": generation_id})
        return Generation.from_json(_checked(response))

    def cancel(self, generation_id: str) -> Generation:
        """Cancel: a queued generation ends at once, a running one at its next step."""
        response = self._http.post(f"{CREATE_PATH}/cancel", params={"generation_id": generation_id})
        return Generation.from_json(_checked(response))

    def list(self, limit: int = 20, after: str | None = None, order: Order = "desc") -> VideoPage:
        """A page of this key's videos (`GET /v1/videos`), newest first unless `order="asc"`."""
        response = self._http.get(VIDEOS_PATH, params=_list_params(limit, after, order))
        return VideoPage.from_json(_checked(response))

    def retrieve(self, video_id: str) -> dict[str, Any]:
        """One video object (`GET /v1/videos/{id}`): status, progress, params, URLs, timings."""
        return _checked(self._http.get(_video_path(video_id)))

    def delete(self, video_id: str) -> dict[str, Any]:
        """Delete a video (a pending one is canceled): `{"id", "object", "deleted": true}`."""
        return _checked(self._http.delete(_video_path(video_id)))

    def wait(
        self,
        generation_id: str,
        *,
        poll_interval: float = 1.0,
        timeout: float | None = 600.0,
        on_progress: ProgressCallback | None = None,
        stream: bool = True,
    ) -> Generation:
        """Follow the server's event stream when it has one; poll otherwise (or if it breaks)."""
        deadline = _deadline(timeout)
        if stream:
            try:
                return self._wait_streaming(generation_id, deadline, on_progress)
            except (_NoStream, httpx.TransportError):
                pass
        return poll_until_done(
            lambda: self.get(generation_id),
            poll_interval=poll_interval,
            timeout=_remaining(deadline),
            on_progress=on_progress,
        )

    def _wait_streaming(
        self, generation_id: str, deadline: float | None, on_progress: ProgressCallback | None
    ) -> Generation:
        params = {"generation_id": generation_id}
        with connect_sse(
            self._http, "GET", EVENTS_PATH, params=params, timeout=STREAM_TIMEOUT
        ) as source:
            if source.response.status_code >= 400:
                source.response.read()
            _check_stream(source.response)
            for event in source.iter_sse():
                generation = _observe(event, on_progress, deadline)
                if generation is not None and generation.done:
                    return generation
        raise _NoStream

    def download(
        self,
        target: Generation | str,
        path: Path | str,
        *,
        on_bytes: DownloadCallback | None = None,
    ) -> Path:
        """Save the video; `on_bytes(received, size)` follows the transfer, chunk by chunk."""
        path = Path(path)
        response = self._http.send(_download_request(self._http, target), stream=True)
        try:
            if response.status_code >= 400:
                response.read()
                _checked(response)
            size = _download_size(response)
            with path.open("wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
                    if on_bytes:
                        on_bytes(response.num_bytes_downloaded, size)
        finally:
            response.close()
        return path


class AsyncClient:
    """The async twin of `Client`; `transport` may be an `httpx.ASGITransport(app)`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create(
        self,
        prompt: str,
        *,
        model: str | None = None,
        image: ImageInput | None = None,
        last_image: ImageInput | None = None,
        duration: float | None = None,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        **options: Any,
    ) -> Generation:
        shape = {"duration": duration, "width": width, "height": height, "fps": fps}
        body = _create_body(prompt, model, {**shape, **options}, image, last_image)
        return Generation.from_json(_checked(await self._http.post(CREATE_PATH, json=body)))

    async def extend(self, video_id: str, prompt: str, seconds: float) -> Generation:
        body = _extension_body(video_id, prompt, seconds)
        return _created_generation(_checked(await self._http.post(EXTENSIONS_PATH, json=body)))

    async def remix(self, video_id: str, prompt: str) -> Generation:
        response = await self._http.post(_remix_path(video_id), json={"prompt": prompt})
        return _created_generation(_checked(response))

    async def get(self, generation_id: str) -> Generation:
        response = await self._http.get(CREATE_PATH, params={"generation_id": generation_id})
        return Generation.from_json(_checked(response))

    async def cancel(self, generation_id: str) -> Generation:
        response = await self._http.post(
            f"{CREATE_PATH}/cancel", params={"generation_id": generation_id}
        )
        return Generation.from_json(_checked(response))

    async def list(
        self, limit: int = 20, after: str | None = None, order: Order = "desc"
    ) -> VideoPage:
        response = await self._http.get(VIDEOS_PATH, params=_list_params(limit, after, order))
        return VideoPage.from_json(_checked(response))

    async def retrieve(self, video_id: str) -> dict[str, Any]:
        return _checked(await self._http.get(_video_path(video_id)))

    async def delete(self, video_id: str) -> dict[str, Any]:
        return _checked(await self._http.delete(_video_path(video_id)))

    async def wait(
        self,
        generation_id: str,
        *,
        poll_interval: float = 1.0,
        timeout: float | None = 600.0,
        on_progress: ProgressCallback | None = None,
        stream: bool = True,
    ) -> Generation:
        async with asyncio.timeout(timeout):
            if stream:
                try:
                    return await self._wait_streaming(generation_id, on_progress)
                except (_NoStream, httpx.TransportError):
                    pass
            while True:
                generation = await self.get(generation_id)
                if on_progress:
                    on_progress(generation)
                if generation.done:
                    return generation
                await asyncio.sleep(poll_interval)

    async def _wait_streaming(
        self, generation_id: str, on_progress: ProgressCallback | None
    ) -> Generation:
        params = {"generation_id": generation_id}
        async with aconnect_sse(
            self._http, "GET", EVENTS_PATH, params=params, timeout=STREAM_TIMEOUT
        ) as source:
            if source.response.status_code >= 400:
                await source.response.aread()
            _check_stream(source.response)
            async for event in source.aiter_sse():
                generation = _observe(event, on_progress, None)
                if generation is not None and generation.done:
                    return generation
        raise _NoStream

    async def download(
        self,
        target: Generation | str,
        path: Path | str,
        *,
        on_bytes: DownloadCallback | None = None,
    ) -> Path:
        path = Path(path)
        response = await self._http.send(_download_request(self._http, target), stream=True)
        try:
            if response.status_code >= 400:
                await response.aread()
                _checked(response)
            size = _download_size(response)
            with path.open("wb") as handle:
                async for chunk in response.aiter_bytes():
                    handle.write(chunk)
                    if on_bytes:
                        on_bytes(response.num_bytes_downloaded, size)
        finally:
            await response.aclose()
        return path
