"""The client's reading of answers (both error shapes, a page of /v1/videos), the bodies it
sends (images as data URIs or URLs, sizes, rates, lengths), and its extend and remix against the
real ASGI app in this process."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from kinema.client import (
    DEFAULT_MODEL,
    IMAGE_TO_VIDEO_MODEL,
    AsyncClient,
    Client,
    Generation,
    VideoPage,
    _checked,
)
from kinema.config import Settings
from kinema.domain import JobStatus, VideoArtifact
from kinema.errors import ClientError
from kinema.server import create_app
from kinema.service import Services


def raised_by(response: httpx.Response) -> ClientError:
    with pytest.raises(ClientError) as caught:
        _checked(response)
    return caught.value


def test_the_hosted_apis_envelope_gives_its_message() -> None:
    body = {
        "requestId": "r",
        "statusCode": 400,
        "path": "/v2/video/generations",
        "message": "Body validation error: duration: must be 5 or 10",
        "errors": [{"field": "duration", "message": "must be 5 or 10"}],
    }
    error = raised_by(httpx.Response(400, json=body))
    assert error.status_code == 400 and error.body == body
    assert str(error) == "HTTP 400: Body validation error: duration: must be 5 or 10"


def test_openais_error_shape_gives_its_message_and_names_the_param() -> None:
    body = {
        "error": {
            "message": "'7' is not supported; use one of '5', '10'",
            "type": "invalid_request_error",
            "param": "seconds",
            "code": "invalid_value",
        }
    }
    error = raised_by(httpx.Response(400, json=body))
    assert error.message == "'7' is not supported; use one of '5', '10' (param: seconds)"
    assert error.body == body
    named = {"error": {"message": "Invalid 'limit': must be <= 100", "param": "limit"}}
    assert raised_by(httpx.Response(400, json=named)).message == "Invalid 'limit': must be <= 100"
    missing = {
        "error": {
            "message": "no video 'x'",
            "type": "invalid_request_error",
            "param": None,
            "code": "not_found",
        }
    }
    assert str(raised_by(httpx.Response(404, json=missing))) == "HTTP 404: no video 'x'"


def test_bodies_that_are_not_json_fall_back_to_the_text() -> None:
    assert raised_by(httpx.Response(502, text="bad gateway")).message == "bad gateway"
    assert raised_by(httpx.Response(503)).message == "Service Unavailable"
    assert raised_by(httpx.Response(405, json={"detail": "Method Not Allowed"})).message == (
        "Method Not Allowed"
    )


def test_a_page_of_videos() -> None:
    page = VideoPage.from_json(
        {
            "object": "list",
            "data": [{"id": "b"}, {"id": "a"}],
            "first_id": "b",
            "last_id": "a",
            "has_more": True,
        }
    )
    assert page == VideoPage([{"id": "b"}, {"id": "a"}], True, "b", "a")
    assert VideoPage.from_json({"object": "list", "data": []}) == VideoPage([], False)


# -- the create body ------------------------------------------------------------------------------


def image_bytes(image_format: str, size: tuple[int, int] = (96, 54)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, image_format)
    return buffer.getvalue()


QUEUED = {"id": "g1", "status": "queued", "progress": 0, "queue_position": 1, "meta": {}}


class Recorder:
    """A server that answers every create with a queued job and keeps the bodies it was sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/v2/video/generations")
        self.bodies.append(json.loads(request.content))
        return httpx.Response(200, json=QUEUED)

    def client(self) -> Client:
        return Client("http://kinema.test", "k", transport=httpx.MockTransport(self))


def test_create_sends_a_local_image_as_a_data_uri_and_a_url_as_it_is(tmp_path: Path) -> None:
    first = tmp_path / "first.png"
    first.write_bytes(image_bytes("PNG"))
    server = Recorder()
    with server.client() as client:
        created = client.create(
            "a card",
            image=first,
            last_image="https://images.example/last.webp",
            duration=2.5,
            width=128,
            height=64,
            fps=24,
            seed=7,
        )
    assert created == Generation.from_json(QUEUED)
    assert server.bodies == [
        {
            "model": IMAGE_TO_VIDEO_MODEL,  # no model given: the Kling id whose body takes images
            "prompt": "a card",
            "image_url": "data:image/png;base64," + base64.b64encode(first.read_bytes()).decode(),
            "tail_image_url": "https://images.example/last.webp",
            "duration": 2.5,
            "width": 128,
            "height": 64,
            "fps": 24,
            "seed": 7,
        }
    ]


@pytest.mark.parametrize(
    ("image_format", "media_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")],
)
def test_the_data_uri_names_the_format_found_in_the_bytes(
    tmp_path: Path, image_format: str, media_type: str
) -> None:
    data = image_bytes(image_format)
    misnamed = tmp_path / "picture.png"  # the name says PNG whatever the bytes are
    misnamed.write_bytes(data)
    server = Recorder()
    with server.client() as client:
        client.create("from a path given as text", model="tiny-ltx2", image=str(misnamed))
        client.create("from bytes", model="tiny-ltx2", last_image=data)
    uri = f"data:{media_type};base64,{base64.b64encode(data).decode()}"
    assert server.bodies[0] == {
        "model": "tiny-ltx2",
        "prompt": "from a path given as text",
        "image_url": uri,
    }
    assert server.bodies[1] == {"model": "tiny-ltx2", "prompt": "from bytes", "tail_image_url": uri}


def test_bodies_without_image_arguments_are_sent_as_before() -> None:
    server = Recorder()
    with server.client() as client:
        client.create("a fox", duration=5, aspect_ratio="9:16", negative_prompt=None)
        client.create("a fox", model="ltxv/ltxv-2", image="data:image/png;base64,AAAA")
        client.create("a fox", image_url="https://images.example/a.png")  # the field itself
    assert server.bodies == [
        {"model": DEFAULT_MODEL, "prompt": "a fox", "duration": 5, "aspect_ratio": "9:16"},
        {"model": "ltxv/ltxv-2", "prompt": "a fox", "image_url": "data:image/png;base64,AAAA"},
        {
            "model": IMAGE_TO_VIDEO_MODEL,
            "prompt": "a fox",
            "image_url": "https://images.example/a.png",
        },
    ]


def test_a_file_that_is_not_an_image_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    server = Recorder()
    with server.client() as client:
        with pytest.raises(ValueError, match=r"notes.png is not a PNG, JPEG or WebP image"):
            client.create("a card", image=text)
        with pytest.raises(FileNotFoundError):
            client.create("a card", image=tmp_path / "missing.png")
    assert server.bodies == []


def test_extend_and_remix_send_openais_bodies_and_read_the_video_object() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    failed = {
        "id": "x2",
        "object": "video",
        "status": "failed",
        "progress": 0,
        "model": "tiny-ltx2",
        "seed": 9,
        "error": {"code": "queue_full", "message": "too many queued"},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append((request.url.raw_path.decode(), json.loads(request.content)))
        return httpx.Response(200, json=failed)

    with Client("http://kinema.test", "k", transport=httpx.MockTransport(answer)) as client:
        extended = client.extend("v/1", "more snow", 4)
        remixed = client.remix("v/1", "rain")
    assert sent == [
        ("/v1/videos/extensions", {"prompt": "more snow", "seconds": "4", "video": {"id": "v/1"}}),
        ("/v1/videos/v%2F1/remix", {"prompt": "rain"}),
    ]
    assert (
        extended
        == remixed
        == Generation(
            id="x2",
            status="error",  # /v2's word for OpenAI's "failed"
            error={"name": "queue_full", "message": "too many queued"},
            meta={"model": "tiny-ltx2", "seed": 9},
        )
    )


# -- extend and remix, against the real app -------------------------------------------------------

CLIP_BYTES = b"\x00\x00\x00\x18ftypmp42" + b"v" * 2000


class App:
    """The real ASGI app (SQLite and local files in a temporary data dir), one key on it, and
    a stand-in worker that completes jobs with a stored file."""

    def __init__(self, test_client: TestClient) -> None:
        self.test_client = test_client
        self.services: Services = test_client.app.state.services  # type: ignore[attr-defined]
        self.key_id, self.key = (lambda made: (made[0].id, made[1]))(
            self.services.keys.create("alice")
        )

    def client(self) -> Client:
        """The real client, its requests served by the app in this process."""
        return Client("http://testserver", self.key, transport=httpx.MockTransport(self._serve))

    def _serve(self, request: httpx.Request) -> httpx.Response:
        """One request through the TestClient (its own httpx build), the answer handed back."""
        answer = self.test_client.request(
            request.method, str(request.url), headers=dict(request.headers), content=request.content
        )
        content_type = answer.headers.get("content-type", "application/octet-stream")
        return httpx.Response(
            answer.status_code, headers={"content-type": content_type}, content=answer.content
        )

    def async_client(self) -> AsyncClient:
        transport = httpx.ASGITransport(app=self.test_client.app)
        return AsyncClient("http://testserver", self.key, transport=transport)

    def complete_next(self, duration: float = 2.0) -> str:
        store, artifacts = self.services.store, self.services.artifacts
        lease = store.claim(["tiny-ltx2"], "test-worker", 30)
        assert lease is not None
        staged = artifacts.staging_path(".mp4")
        staged.write_bytes(CLIP_BYTES)
        key = f"{lease.job.id}/clip.mp4"
        artifacts.put(key, staged)
        artifact = VideoArtifact(key, "clip.mp4", len(CLIP_BYTES), duration, 96, 54, 24.0, True)
        store.complete(lease, artifact, {})
        return lease.job.id


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    with TestClient(create_app(settings)) as test_client:
        yield App(test_client)


def test_create_with_an_image_file_stores_it_as_the_first_frame(app: App, tmp_path: Path) -> None:
    png = image_bytes("PNG", (128, 64))
    path = tmp_path / "first.png"
    path.write_bytes(png)
    with app.client() as client:
        created = client.create(
            "a card", model="tiny-ltx2", image=path, width=128, height=64, duration=2
        )
    job = app.services.store.get_job(created.id)
    assert job is not None and created.status == "queued"
    assert (job.request.width, job.request.height, job.request.duration) == (128, 64, 2)
    [condition] = job.request.conditions
    assert condition.frame == 0 and condition.kind == "image"
    assert b"".join(app.services.artifacts.iter_bytes(condition.key)) == png


def test_extend_continues_a_completed_clip_and_is_followed_on_v2(app: App) -> None:
    with app.client() as client:
        source = client.create("a fox in the snow", model="tiny-ltx2", duration=2, seed=4)
        app.complete_next(duration=2.0)
        extension = client.extend(source.id, "the fox runs on", 3)
        assert extension.status == "queued" and extension.id != source.id
        assert extension.meta["model"] == "tiny-ltx2"
        polled = client.get(extension.id)  # followed on /v2, as every job is
    assert (polled.id, polled.status) == (extension.id, "queued")
    assert polled.queue_position == extension.queue_position is not None
    assert polled.meta["extended_from"] == source.id and polled.meta["continued_seconds"] == 2.0
    job = app.services.store.get_job(extension.id)
    assert job is not None and job.owner == app.key_id
    assert (job.request.prompt, job.request.duration) == ("the fox runs on", 3)
    assert job.request.continues is not None and job.request.continues.startswith(source.id)


def test_remix_makes_a_new_job_of_a_completed_clip(app: App) -> None:
    with app.client() as client:
        source = client.create("a fox in the snow", model="tiny-ltx2", duration=2, seed=4)
        app.complete_next()
        remixed = client.remix(source.id, "a wolf in the snow")
        polled = client.get(remixed.id)
    assert remixed.status == "queued" and remixed.meta["seed"] == 4
    assert polled.meta["remixed_from"] == source.id
    job = app.services.store.get_job(remixed.id)
    assert job is not None and job.request.prompt == "a wolf in the snow"
    assert job.status is JobStatus.QUEUED


def test_extending_a_clip_that_is_not_done_is_refused_naming_the_video(app: App) -> None:
    with app.client() as client:
        pending = client.create("still queued", model="tiny-ltx2", duration=2)
        with pytest.raises(ClientError) as refused:
            client.extend(pending.id, "more", 2)
        with pytest.raises(ClientError) as missing:
            client.remix("no-such-video", "more")
    assert refused.value.status_code == 400
    assert refused.value.message.startswith("Invalid 'video': ")
    assert "is not completed (status: queued)" in refused.value.message
    assert missing.value.status_code == 404


def test_the_async_client_extends_and_remixes(app: App) -> None:
    with app.client() as client:
        source = client.create("a fox in the snow", model="tiny-ltx2", duration=2)
    app.complete_next()

    async def scenario() -> tuple[Generation, Generation, Generation]:
        async with app.async_client() as client:
            extension = await client.extend(source.id, "on and on", 2)
            remixed = await client.remix(source.id, "a wolf")
            return extension, remixed, await client.get(extension.id)

    extension, remixed, polled = asyncio.run(scenario())
    assert extension.status == remixed.status == "queued"
    assert polled.meta["extended_from"] == source.id
    assert len({extension.id, remixed.id, source.id}) == 3
