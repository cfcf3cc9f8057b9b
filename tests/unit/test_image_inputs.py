"""Image-to-video inputs through the real ASGI app: which body each model id reads, how its images
become the stored job's conditions and artifacts, and every refusal leaving nothing behind.

Hermetic: images are data URIs made in memory; the only URLs are refused before any DNS lookup
(http:// with http disallowed, or IP literals on refused addresses)."""

from __future__ import annotations

import base64
import io
import random
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from kinema.config import Settings
from kinema.domain import Condition, Job
from kinema.server import create_app
from tests.conftest import count_jobs

V2 = "/v2/video/generations"
LEGACY = "/v2/generate/video/kling/generation"
VIDEOS = "/v1/videos"
KLING = "klingai/video-v2-6-pro-text-to-video"
KLING_I2V = "klingai/video-v2-6-pro-image-to-video"
LTXV_FAST = "ltxv/ltxv-2-fast"
PROMPT = "a paper boat drifts down a gutter"
ENVELOPE_KEYS = {"requestId", "statusCode", "timestamp", "path", "message"}
TINY_SIZES = {"16:9": (96, 54), "9:16": (54, 96), "1:1": (64, 64)}
INPUT_MAX_BYTES = 100_000  # the `settings` fixture's limit


def image_bytes(
    image_format: str = "PNG", size: tuple[int, int] = (96, 54), color: tuple[int, ...] = (0, 0, 0)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, image_format)
    return buffer.getvalue()


def noisy_png(size: tuple[int, int]) -> bytes:
    """A PNG that does not compress away: about 3 bytes per pixel."""
    pixels = random.Random(0).randbytes(size[0] * size[1] * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(buffer, "PNG")
    return buffer.getvalue()


def data_uri(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


PNG = image_bytes("PNG", (96, 54), (250, 10, 10))
TAIL_PNG = image_bytes("PNG", (96, 54), (10, 10, 250))
PNG_URI = data_uri(PNG)


class Api:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.services = client.app.state.services  # type: ignore[attr-defined]
        self.store = self.services.store
        self.artifacts = self.services.artifacts
        _, self.key = self.services.keys.create("first")
        self.auth = {"Authorization": f"Bearer {self.key}"}

    def create(self, body: dict[str, Any]) -> Any:
        return self.client.post(V2, json={"prompt": PROMPT, **body}, headers=self.auth)

    def video(self, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.client.post(VIDEOS, json=body, headers=self.auth, **kwargs)

    def job(self, response: Any) -> Job:
        assert response.status_code == 200, response.text
        job = self.store.get_job(response.json()["id"])
        assert job is not None
        return job

    def stored(self, condition: Condition) -> bytes:
        assert self.artifacts.exists(condition.key), condition
        return b"".join(self.artifacts.iter_bytes(condition.key))

    def assert_nothing_stored(self) -> None:
        assert count_jobs(self.store) == 0
        assert self.store.list_jobs(None, newest_first=True) == []
        assert self.artifacts.keys("") == []


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    assert settings.input_max_bytes == INPUT_MAX_BYTES
    with TestClient(create_app(settings)) as client:
        yield Api(client)


def assert_envelope(response: Any, field: str) -> dict[str, Any]:
    """A 400 in the v2 contract's envelope, naming `field`."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body.keys() >= ENVELOPE_KEYS
    assert body["statusCode"] == 400
    assert body["message"].startswith("Body validation error")
    assert field in [error["field"] for error in body["errors"]], body
    return body


def field_message(body: dict[str, Any], field: str) -> str:
    return " ".join(e["message"] for e in body["errors"] if e["field"] == field)


def assert_openai_error(response: Any, param: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body.keys() == {"error"}, body
    error = body["error"]
    assert error.keys() == {"message", "type", "param", "code"}
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str) and error["message"]
    return error


# Kling image-to-video


def test_kling_image_to_video_stores_the_image_as_the_first_frame(api: Api) -> None:
    job = api.job(api.create({"model": KLING_I2V, "image_url": PNG_URI}))
    assert job.request.model == "tiny-ltx2"
    assert job.meta["requested_model"] == KLING_I2V
    (condition,) = job.request.conditions
    assert condition.frame == 0 and condition.kind == "image" and condition.strength == 1.0
    assert condition.key == f"{job.id}/input-0.png"
    assert api.stored(condition) == PNG
    assert api.artifacts.keys("") == [condition.key]
    assert (job.request.aspect_ratio, job.request.duration) == ("16:9", 5)
    assert (job.request.width, job.request.height) == TINY_SIZES["16:9"]


@pytest.mark.parametrize(
    ("size", "aspect_ratio"),
    [
        pytest.param((54, 96), "9:16", id="portrait"),
        pytest.param((720, 1280), "9:16", id="portrait-720p"),
        pytest.param((50, 50), "1:1", id="square"),
        pytest.param((60, 50), "1:1", id="nearly-square"),
        pytest.param((160, 90), "16:9", id="landscape"),
        pytest.param((400, 100), "16:9", id="panorama"),
    ],
)
def test_kling_image_to_video_takes_the_images_shape(
    api: Api, size: tuple[int, int], aspect_ratio: str
) -> None:
    image = image_bytes("PNG", size)
    job = api.job(api.create({"model": KLING_I2V, "image_url": data_uri(image)}))
    assert job.request.aspect_ratio == aspect_ratio
    assert (job.request.width, job.request.height) == TINY_SIZES[aspect_ratio]
    assert api.stored(job.request.conditions[0]) == image


def test_the_legacy_path_takes_images_too(api: Api) -> None:
    body = {"prompt": PROMPT, "model": KLING_I2V, "image_url": PNG_URI}
    response = api.client.post(LEGACY, json=body, headers=api.auth)
    (condition,) = api.job(response).request.conditions
    assert condition.frame == 0 and api.stored(condition) == PNG


def test_kling_image_to_video_ignores_a_sent_aspect_ratio(api: Api) -> None:
    portrait = data_uri(image_bytes("PNG", (54, 96)))
    body = {"model": KLING_I2V, "image_url": portrait, "aspect_ratio": "16:9", "duration": 10}
    job = api.job(api.create(body))
    assert (job.request.aspect_ratio, job.request.duration) == ("9:16", 10)


@pytest.mark.parametrize(
    ("image_format", "declared", "suffix"),
    [
        pytest.param("JPEG", "image/jpeg", ".jpg", id="jpeg"),
        pytest.param("WEBP", "image/webp", ".webp", id="webp"),
        # The stored file is named by the format found in the bytes, not the declared one.
        pytest.param("JPEG", "image/png", ".jpg", id="jpeg-declared-png"),
    ],
)
def test_jpeg_and_webp_are_accepted(
    api: Api, image_format: str, declared: str, suffix: str
) -> None:
    image = image_bytes(image_format, (64, 64), (20, 200, 20))
    job = api.job(api.create({"model": KLING_I2V, "image_url": data_uri(image, declared)}))
    (condition,) = job.request.conditions
    assert condition.key == f"{job.id}/input-0{suffix}"
    assert api.stored(condition) == image
    assert job.request.aspect_ratio == "1:1"


def test_tail_image_is_the_last_frame(api: Api) -> None:
    body = {"model": KLING_I2V, "image_url": PNG_URI, "tail_image_url": data_uri(TAIL_PNG)}
    job = api.job(api.create(body))
    first, last = job.request.conditions
    assert (first.frame, last.frame) == (0, -1)
    assert (first.key, last.key) == (f"{job.id}/input-0.png", f"{job.id}/input-1.png")
    assert (api.stored(first), api.stored(last)) == (PNG, TAIL_PNG)
    assert api.artifacts.keys("") == sorted([first.key, last.key])


def test_the_shape_comes_from_the_first_image_not_the_tail(api: Api) -> None:
    body = {
        "model": KLING_I2V,
        "image_url": data_uri(image_bytes("PNG", (54, 96))),
        "tail_image_url": data_uri(image_bytes("PNG", (96, 54))),
    }
    assert api.job(api.create(body)).request.aspect_ratio == "9:16"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="missing"),
        pytest.param({"image_url": None}, id="null"),
        pytest.param({"image_url": ""}, id="empty"),
        pytest.param({"image_url": 7}, id="not-a-string"),
        pytest.param({"tail_image_url": PNG_URI}, id="tail-only"),
    ],
)
def test_kling_image_to_video_requires_image_url(api: Api, changes: dict[str, Any]) -> None:
    assert_envelope(api.create({"model": KLING_I2V, **changes}), "image_url")
    api.assert_nothing_stored()


def test_kling_text_to_video_ignores_images(api: Api) -> None:
    body = {"model": KLING, "image_url": PNG_URI, "tail_image_url": PNG_URI, "duration": 10}
    job = api.job(api.create({**body, "aspect_ratio": "9:16"}))
    assert job.request.conditions == ()
    assert (job.request.aspect_ratio, job.request.duration) == ("9:16", 10)
    assert (job.request.width, job.request.height) == TINY_SIZES["9:16"]
    assert job.request.fps is None
    assert api.artifacts.keys("") == []


def test_kling_text_to_video_contract_is_unchanged(api: Api) -> None:
    """The text-to-video id keeps its own fields: no free durations, no sizes, no fps."""
    assert_envelope(api.create({"model": KLING, "duration": 6}), "duration")
    assert_envelope(api.create({"model": KLING, "aspect_ratio": "4:3"}), "aspect_ratio")
    job = api.job(api.create({"model": KLING, "width": 128, "height": 64, "fps": 50}))
    assert (job.request.width, job.request.height, job.request.fps) == (96, 54, None)


# LTX-2 as the hosted API serves it


@pytest.mark.parametrize("image", [True, False], ids=["image", "text"])
def test_ltxv_defaults(api: Api, image: bool) -> None:
    body: dict[str, Any] = {"model": LTXV_FAST}
    if image:
        body["image_url"] = PNG_URI
    job = api.job(api.create(body))
    request = job.request
    assert request.model == "tiny-ltx2"
    assert (request.width, request.height, request.fps, request.duration) == (1920, 1080, 25, 6)
    assert request.aspect_ratio == "16:9" and request.generate_audio is True
    if image:
        (condition,) = request.conditions
        assert condition.frame == 0 and api.stored(condition) == PNG
    else:
        assert request.conditions == () and api.artifacts.keys("") == []


@pytest.mark.parametrize("duration", [8, 10, "8"])
def test_ltxv_longer_durations(api: Api, duration: int | str) -> None:
    job = api.job(api.create({"model": LTXV_FAST, "duration": duration}))
    assert job.request.duration == int(duration)


@pytest.mark.parametrize("duration", [5, 7, 6.5, "five", True])
def test_ltxv_other_durations_are_refused(api: Api, duration: Any) -> None:
    assert_envelope(api.create({"model": LTXV_FAST, "duration": duration}), "duration")
    api.assert_nothing_stored()


def test_ltxv_fps_50(api: Api) -> None:
    assert api.job(api.create({"model": LTXV_FAST, "fps": 50})).request.fps == 50


@pytest.mark.parametrize("fps", [30, 24, 0])
def test_ltxv_other_fps_are_refused(api: Api, fps: int) -> None:
    assert_envelope(api.create({"model": LTXV_FAST, "fps": fps}), "fps")
    api.assert_nothing_stored()


def test_ltxv_aspect_ratio_is_16_9_only(api: Api) -> None:
    assert_envelope(api.create({"model": LTXV_FAST, "aspect_ratio": "9:16"}), "aspect_ratio")


@pytest.mark.parametrize(("resolution", "size"), [("1440p", "2560x1440"), ("2160p", "3840x2160")])
def test_ltxv_resolutions_too_large_for_the_model_are_refused(
    api: Api, resolution: str, size: str
) -> None:
    body = {"model": LTXV_FAST, "resolution": resolution, "image_url": PNG_URI}
    error = assert_envelope(api.create(body), "resolution")
    assert "size" not in [e["field"] for e in error["errors"]]
    message = field_message(error, "resolution")
    assert size in message and "too large" in message and "1920" in message, message
    api.assert_nothing_stored()


def test_ltxv_unknown_resolution_is_refused(api: Api) -> None:
    assert_envelope(api.create({"model": LTXV_FAST, "resolution": "720p"}), "resolution")


# kinema's own ids


def test_kinema_body_takes_size_length_rate_and_images(api: Api) -> None:
    body = {
        "model": "tiny-ltx2",
        "width": 128,
        "height": 64,
        "duration": 3,
        "fps": 30,
        "image_url": PNG_URI,
        "tail_image_url": data_uri(TAIL_PNG),
    }
    request = api.job(api.create(body)).request
    assert (request.width, request.height, request.duration, request.fps) == (128, 64, 3, 30)
    assert [c.frame for c in request.conditions] == [0, -1]
    assert [api.stored(c) for c in request.conditions] == [PNG, TAIL_PNG]


def test_kinema_body_takes_fractional_seconds(api: Api) -> None:
    request = api.job(api.create({"model": "tiny-ltx2", "duration": 2.5})).request
    assert request.duration == 2.5 and request.conditions == ()


@pytest.mark.parametrize("changes", [{"width": 128}, {"height": 64}], ids=["width", "height"])
def test_kinema_body_width_and_height_go_together(api: Api, changes: dict[str, Any]) -> None:
    response = api.create({"model": "tiny-ltx2", "image_url": PNG_URI, **changes})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body.keys() >= ENVELOPE_KEYS and body["statusCode"] == 400
    assert "width" in body["message"] and "height" in body["message"], body
    api.assert_nothing_stored()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"width": 2048, "height": 1024}, "width", id="too-wide"),
        pytest.param({"width": 129, "height": 64}, "width", id="odd"),
        pytest.param({"duration": 21}, "duration", id="too-long"),
        pytest.param({"fps": 60}, "fps", id="fps"),
    ],
)
def test_kinema_body_refuses_what_the_model_cannot_make(
    api: Api, changes: dict[str, Any], field: str
) -> None:
    response = api.create({"model": "tiny-ltx2", "image_url": PNG_URI, **changes})
    assert_envelope(response, field)
    api.assert_nothing_stored()


# Refused images: a 400 naming the field, and no job, no artifact


def refused_references() -> list[Any]:
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, "GIF")
    big = noisy_png((200, 200))
    assert len(big) > INPUT_MAX_BYTES
    return [
        pytest.param(data_uri(b"this is plain text, not a picture"), id="text-as-png"),
        pytest.param(data_uri(PNG[: len(PNG) // 2]), id="truncated-png"),
        pytest.param(data_uri(gif.getvalue(), "image/gif"), id="gif"),
        pytest.param(data_uri(gif.getvalue()), id="gif-declared-png"),
        pytest.param("data:image/png;base64,not base64!", id="bad-base64"),
        pytest.param(data_uri(big), id="over-100kB"),
        pytest.param("http://example.com/a.png", id="http"),
        pytest.param("ftp://example.com/a.png", id="ftp"),
        pytest.param("/etc/passwd", id="path"),
        pytest.param("https://127.0.0.1/x.png", id="loopback"),
        pytest.param("https://[::1]/x.png", id="loopback-v6"),
        pytest.param("https://10.1.2.3/x.png", id="private"),
        pytest.param("https://192.168.0.1/x.png", id="private-192"),
        pytest.param("https://169.254.169.254/x.png", id="link-local"),
        pytest.param("https://0.0.0.0/x.png", id="unspecified"),
    ]


REFUSED = refused_references()
# The tail goes through the same check: one of each kind of refusal (decoding, size, address).
REFUSED_TAILS = [case for case in REFUSED if case.id in ("text-as-png", "over-100kB", "loopback")]


@pytest.mark.parametrize("reference", REFUSED)
def test_refused_image_url(api: Api, reference: str) -> None:
    error = assert_envelope(api.create({"model": KLING_I2V, "image_url": reference}), "image_url")
    assert field_message(error, "image_url")
    api.assert_nothing_stored()


@pytest.mark.parametrize("reference", REFUSED_TAILS)
def test_refused_tail_image_url_after_a_good_first_image(api: Api, reference: str) -> None:
    body = {"model": KLING_I2V, "image_url": PNG_URI, "tail_image_url": reference}
    error = assert_envelope(api.create(body), "tail_image_url")
    assert "image_url" not in [e["field"] for e in error["errors"]]
    api.assert_nothing_stored()


@pytest.mark.parametrize(
    "model", ["tiny-ltx2", LTXV_FAST, "ltxv/ltxv-2"], ids=["kinema", "ltxv-fast", "ltxv"]
)
def test_refused_image_url_on_the_other_bodies(api: Api, model: str) -> None:
    body = {"model": model, "image_url": data_uri(b"not an image")}
    assert_envelope(api.create(body), "image_url")
    api.assert_nothing_stored()


def test_refusal_messages_say_why(api: Api) -> None:
    cases = {
        data_uri(b"plain text"): "not an image",
        data_uri(noisy_png((200, 200))): "too large",
        "http://example.com/a.png": "https://",
        "https://127.0.0.1/x.png": "refused address",
        "https://169.254.169.254/x.png": "refused address",
    }
    for reference, reason in cases.items():
        error = assert_envelope(
            api.create({"model": KLING_I2V, "image_url": reference}), "image_url"
        )
        assert reason in field_message(error, "image_url"), (reference, error)
    api.assert_nothing_stored()


def test_an_image_at_the_limit_is_accepted(api: Api) -> None:
    image = noisy_png((150, 150))
    assert 60_000 < len(image) <= INPUT_MAX_BYTES
    job = api.job(api.create({"model": KLING_I2V, "image_url": data_uri(image)}))
    assert api.stored(job.request.conditions[0]) == image


def test_two_images_at_the_limit_fit_in_one_body(api: Api) -> None:
    first, last = noisy_png((182, 182)), noisy_png((181, 181))
    assert 95_000 < len(last) < len(first) <= INPUT_MAX_BYTES
    body = {"model": KLING_I2V, "image_url": data_uri(first), "tail_image_url": data_uri(last)}
    job = api.job(api.create(body))
    assert [api.stored(c) for c in job.request.conditions] == [first, last]


def test_a_refused_callback_url_stores_no_image(api: Api) -> None:
    body = {"model": KLING_I2V, "image_url": PNG_URI, "callback_url": "https://127.0.0.1/hook"}
    assert_envelope(api.create(body), "callback_url")
    api.assert_nothing_stored()


def test_a_full_queue_stores_no_image(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"max_queued_per_key": 1}))) as client:
        api = Api(client)
        first = api.job(api.create({"model": KLING_I2V, "image_url": PNG_URI}))
        response = api.create({"model": KLING_I2V, "image_url": data_uri(TAIL_PNG)})
        assert response.status_code == 429, response.text
        assert count_jobs(api.store) == 1
        assert api.artifacts.keys("") == [first.request.conditions[0].key]


def test_a_refusal_after_a_success_leaves_the_first_job_alone(api: Api) -> None:
    first = api.job(api.create({"model": KLING_I2V, "image_url": PNG_URI}))
    keys = api.artifacts.keys("")
    body = {"model": KLING_I2V, "image_url": PNG_URI, "tail_image_url": data_uri(b"x")}
    assert_envelope(api.create(body), "tail_image_url")
    assert count_jobs(api.store) == 1
    assert api.artifacts.keys("") == keys == [first.request.conditions[0].key]


# OpenAI's /v1/videos


@pytest.mark.parametrize(
    ("image", "suffix"),
    [
        pytest.param(PNG, ".png", id="png"),
        pytest.param(image_bytes("JPEG", (128, 64)), ".jpg", id="jpeg"),
        pytest.param(image_bytes("WEBP", (128, 64)), ".webp", id="webp"),
    ],
)
def test_openai_multipart_input_reference_is_the_first_frame(
    api: Api, image: bytes, suffix: str
) -> None:
    files = {"input_reference": ("ref.png", image, "image/png")}
    form = {"prompt": PROMPT, "size": "128x64", "seconds": "4"}
    response = api.client.post(VIDEOS, data=form, files=files, headers=api.auth)
    job = api.job(response)
    (condition,) = job.request.conditions
    assert condition.frame == 0 and condition.key == f"{job.id}/input-0{suffix}"
    assert api.stored(condition) == image
    assert (job.request.width, job.request.height, job.request.duration) == (128, 64, 4)
    assert response.json()["size"] == "128x64"


def test_openai_json_input_reference_data_uri(api: Api) -> None:
    body = {"prompt": PROMPT, "input_reference": {"image_url": PNG_URI}}
    job = api.job(api.video(body))
    (condition,) = job.request.conditions
    assert condition.frame == 0 and api.stored(condition) == PNG
    assert (job.request.width, job.request.height, job.request.duration) == (720, 1280, 4)


def test_openai_without_input_reference_has_no_conditions(api: Api) -> None:
    response = api.video({"prompt": PROMPT})
    job = api.job(response)
    assert job.request.conditions == () and api.artifacts.keys("") == []
    assert response.json()["input_images"] == []


def test_the_video_object_links_the_images_it_was_made_from(api: Api) -> None:
    """What the playground's Re-run reads back: each image, at its frame, as kinema stored it."""
    body = {"model": "tiny-ltx2", "image_url": PNG_URI, "tail_image_url": data_uri(TAIL_PNG)}
    job = api.job(api.create(body))
    video = api.client.get(f"{VIDEOS}/{job.id}", headers=api.auth).json()
    frames = [image["frame"] for image in video["input_images"]]
    assert frames == [0, -1]
    first, last = (api.client.get(image["url"]) for image in video["input_images"])
    assert (first.status_code, first.headers["content-type"], first.content) == (
        200,
        "image/png",
        PNG,
    )
    assert last.content == TAIL_PNG


@pytest.mark.parametrize(
    "reference",
    [
        pytest.param(PNG_URI, id="string"),
        pytest.param({}, id="empty-object"),
        pytest.param({"image_url": ""}, id="empty-url"),
        pytest.param({"image_url": 3}, id="url-not-string"),
        pytest.param({"url": PNG_URI}, id="other-key"),
        pytest.param([PNG_URI], id="list"),
        pytest.param(7, id="number"),
    ],
)
def test_openai_input_reference_of_a_wrong_shape(api: Api, reference: Any) -> None:
    assert_openai_error(
        api.video({"prompt": PROMPT, "input_reference": reference}), "input_reference"
    )
    api.assert_nothing_stored()


@pytest.mark.parametrize(
    "reference",
    [
        pytest.param("http://example.com/a.png", id="http"),
        pytest.param("https://127.0.0.1/x.png", id="loopback"),
        pytest.param("https://[::1]/x.png", id="loopback-v6"),
        pytest.param("https://169.254.169.254/x.png", id="link-local"),
        pytest.param(data_uri(b"not an image"), id="not-image"),
        pytest.param(data_uri(noisy_png((200, 200))), id="too-large"),
    ],
)
def test_openai_refused_input_reference(api: Api, reference: str) -> None:
    body = {"prompt": PROMPT, "input_reference": {"image_url": reference}}
    assert_openai_error(api.video(body), "input_reference")
    api.assert_nothing_stored()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GIF89a not really", id="gif-magic"),
        pytest.param(noisy_png((200, 200)), id="too-large"),
        pytest.param(PNG[:40], id="truncated"),
    ],
)
def test_openai_refused_multipart_input_reference(api: Api, data: bytes) -> None:
    files = {"input_reference": ("ref.png", data, "image/png")}
    response = api.client.post(VIDEOS, data={"prompt": PROMPT}, files=files, headers=api.auth)
    assert_openai_error(response, "input_reference")
    api.assert_nothing_stored()


def test_deleting_a_video_removes_its_inputs(api: Api) -> None:
    kept = api.job(api.create({"model": KLING_I2V, "image_url": PNG_URI}))
    body = {"model": KLING_I2V, "image_url": PNG_URI, "tail_image_url": data_uri(TAIL_PNG)}
    doomed = api.job(api.create(body))
    assert len(api.artifacts.keys(f"{doomed.id}/")) == 2
    response = api.client.delete(f"{VIDEOS}/{doomed.id}", headers=api.auth)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": doomed.id, "object": "video.deleted", "deleted": True}
    assert api.artifacts.keys(f"{doomed.id}/") == []
    assert all(not api.artifacts.exists(c.key) for c in doomed.request.conditions)
    assert api.artifacts.keys("") == [kept.request.conditions[0].key]
    assert api.client.get(f"{VIDEOS}/{doomed.id}", headers=api.auth).status_code == 404
