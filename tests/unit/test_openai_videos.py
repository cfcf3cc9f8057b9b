"""OpenAI's videos API (/v1/videos), request by request, through the real ASGI app."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kinema.config import Settings
from kinema.domain import VideoArtifact
from kinema.errors import ModelUnavailable
from kinema.server import create_app
from tests.conftest import count_jobs

PATH = "/v1/videos"
V2 = "/v2/video/generations"
KLING = "klingai/video-v2-6-pro-text-to-video"
VALID: dict[str, Any] = {"prompt": "a fox runs through snow"}
VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42" + b"v" * 5000
JPEG_BYTES = b"\xff\xd8\xff\xe0" + b"j" * 300 + b"\xff\xd9"
TIMINGS = {"generate": 1.5, "encode": 0.25}
VIDEO_KEYS = {
    "id",
    "object",
    "model",
    "status",
    "progress",
    "created_at",
    "completed_at",
    "expires_at",
    "seconds",
    "size",
    "prompt",
    "remixed_from_video_id",
    "error",
    "negative_prompt",
    "cfg_scale",
    "generate_audio",
    "enhance_prompt",
    "loras",
    "prompt_used",
    "seed",
    "aspect_ratio",
    "stage",
    "queue_position",
    "started_at",
    "attempts",
    "timings",
    "video_url",
    "thumbnail_url",
    "duration",
    "file_size",
    "has_audio",
    "callback_url",
    "input_images",
}


class Api:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.services = client.app.state.services  # type: ignore[attr-defined]
        self.store = self.services.store
        _, self.key = self.services.keys.create("first")
        _, self.other_key = self.services.keys.create("second")
        self.auth = {"Authorization": f"Bearer {self.key}"}
        self.other_auth = {"Authorization": f"Bearer {self.other_key}"}

    def create(self, body: Any = None, **kwargs: Any) -> Any:
        return self.client.post(
            PATH, json=VALID if body is None else body, headers=self.auth, **kwargs
        )

    def created_id(self, body: Any = None) -> str:
        response = self.create(body)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def retrieve(self, video_id: str, auth: dict[str, str] | None = None) -> Any:
        return self.client.get(f"{PATH}/{video_id}", headers=auth or self.auth)

    def list(self, **params: Any) -> Any:
        return self.client.get(PATH, params=params, headers=self.auth)

    def content(self, video_id: str, **params: Any) -> Any:
        return self.client.get(f"{PATH}/{video_id}/content", params=params, headers=self.auth)

    def finish_next(self, *, thumbnail: bool = True) -> str:
        """Play the worker: claim the oldest queued job and complete it with stored files."""
        lease = self.store.claim(["tiny-ltx2"], "test-worker", 30)
        assert lease is not None
        job_id = lease.job.id
        video_key = self._put(f"{job_id}/video.mp4", VIDEO_BYTES)
        thumbnail_key = self._put(f"{job_id}/thumbnail.jpg", JPEG_BYTES) if thumbnail else None
        artifact = VideoArtifact(
            video_key, "video.mp4", len(VIDEO_BYTES), 5.0, 96, 54, 24.0, True, thumbnail_key
        )
        self.store.complete(lease, artifact, {"timings": TIMINGS})
        return str(job_id)

    def _put(self, key: str, data: bytes) -> str:
        staged = self.services.artifacts.staging_path("." + key.rpartition(".")[2])
        staged.write_bytes(data)
        self.services.artifacts.put(key, staged)
        return key


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    with TestClient(create_app(settings)) as client:
        yield Api(client)


def assert_openai_error(
    response: Any, status: int, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body.keys() == {"error"}, body
    error = body["error"]
    assert error.keys() == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    expected_type = {429: "rate_limit_exceeded"}.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
    assert error["type"] == expected_type
    return error  # type: ignore[no-any-return]


# Create


def test_create_answers_a_queued_video_object(api: Api) -> None:
    response = api.create({**VALID, "seed": 11})
    assert response.status_code == 200, response.text
    video = response.json()
    assert video.keys() == VIDEO_KEYS
    assert video["object"] == "video" and video["status"] == "queued"
    assert (video["model"], video["seconds"], video["size"]) == ("tiny-ltx2", "4", "720x1280")
    assert (video["progress"], video["queue_position"], video["attempts"]) == (0, 0, 0)
    assert video["prompt"] == VALID["prompt"] and video["seed"] == 11
    assert (video["cfg_scale"], video["generate_audio"], video["aspect_ratio"]) == (
        0.5,
        True,
        "9:16",
    )
    assert isinstance(video["created_at"], int)
    nulls = ["completed_at", "expires_at", "remixed_from_video_id", "error", "timings"]
    nulls += ["video_url", "thumbnail_url", "duration", "file_size", "has_audio", "started_at"]
    assert all(video[name] is None for name in nulls), video
    job = api.store.get_job(video["id"])
    assert job is not None and job.request.seed == 11 and job.request.duration == 4


ACCEPTED = [
    pytest.param({}, (4, 720, 1280), id="openai-defaults"),
    pytest.param({"seconds": "8"}, (8, 720, 1280), id="seconds-8"),
    pytest.param({"seconds": "12"}, (12, 720, 1280), id="seconds-12"),
    pytest.param({"seconds": 8}, (8, 720, 1280), id="seconds-int"),
    pytest.param({"seconds": "4", "size": "720x1280"}, (4, 720, 1280), id="explicit-defaults"),
    pytest.param({"size": "1280x720"}, (4, 1280, 720), id="landscape"),
    pytest.param({"size": "1024x1792"}, (4, 1024, 1792), id="tall"),
    pytest.param({"size": "1792x1024"}, (4, 1792, 1024), id="wide"),
    pytest.param({"size": "1920x1080", "seconds": "5"}, (5, 1920, 1080), id="kinema-1080p"),
    pytest.param({"size": "1080x1080", "seconds": "10"}, (10, 1080, 1080), id="kinema-square"),
    pytest.param({"size": "128x64", "seconds": "7"}, (7, 128, 64), id="free-size-and-length"),
    pytest.param({"seconds": None, "size": None, "model": None}, (4, 720, 1280), id="nulls"),
    pytest.param({"model": KLING}, (4, 720, 1280), id="kling-alias"),
    pytest.param({"model": "sora-2"}, (4, 720, 1280), id="sora-alias"),
    pytest.param({"model": "sora-2-pro"}, (4, 720, 1280), id="sora-pro-alias"),
    pytest.param({"model": "tiny-ltx2"}, (4, 720, 1280), id="served-id"),
    pytest.param({"remix": True, "n": 2, "aspect_ratio": "1:1"}, (4, 720, 1280), id="unknown-keys"),
]


@pytest.mark.parametrize(("changes", "expected"), ACCEPTED)
def test_valid_bodies_are_queued(
    api: Api, changes: dict[str, Any], expected: tuple[int, int, int]
) -> None:
    video = api.create({**VALID, **changes}).json()
    job = api.store.get_job(video["id"])
    assert job is not None
    assert (job.request.duration, job.request.width, job.request.height) == expected
    assert job.request.model == video["model"] == "tiny-ltx2"
    seconds, width, height = expected
    assert (video["seconds"], video["size"]) == (str(seconds), f"{width}x{height}")


def test_extensions_reach_the_job(api: Api) -> None:
    extensions = {
        "negative_prompt": "blur",
        "cfg_scale": 0.25,
        "generate_audio": False,
        "seed": 2**32 - 1,
    }
    video = api.create({**VALID, **extensions, "prompt": "  padded  "}).json()
    assert {name: video[name] for name in extensions} == extensions
    job = api.store.get_job(video["id"])
    assert job is not None
    assert job.request.prompt == "padded"
    assert (job.request.negative_prompt, job.request.cfg_scale) == ("blur", 0.25)
    assert (job.request.generate_audio, job.request.seed) == (False, 2**32 - 1)


def test_multipart_create_coerces_form_text(api: Api) -> None:
    form = {
        "prompt": "a drummer on a rooftop",
        "model": KLING,
        "seconds": "10",
        "size": "1080x1080",
        "negative_prompt": "",
        "cfg_scale": "0.75",
        "generate_audio": "false",
        "seed": "42",
        "unknown": "ignored",
    }
    response = api.client.post(PATH, data=form, files={"notes": ("n.txt", b"x")}, headers=api.auth)
    assert response.status_code == 200, response.text
    assert response.request.headers["content-type"].startswith("multipart/form-data")
    job = api.store.get_job(response.json()["id"])
    assert job is not None
    request = job.request
    assert (request.prompt, request.duration, request.aspect_ratio) == (form["prompt"], 10, "1:1")
    assert (request.cfg_scale, request.generate_audio, request.seed) == (0.75, False, 42)
    assert request.negative_prompt is None


@pytest.mark.parametrize(
    ("form", "param"),
    [
        pytest.param({"seconds": "eight"}, "seconds", id="seconds"),
        pytest.param({"size": "720 by 1280"}, "size", id="size"),
        pytest.param({"cfg_scale": "high"}, "cfg_scale", id="cfg-text"),
        pytest.param({"seed": "-1"}, "seed", id="seed-negative"),
        pytest.param({"generate_audio": "maybe"}, "generate_audio", id="audio-text"),
        pytest.param({"prompt": ""}, "prompt", id="prompt-empty"),
    ],
)
def test_multipart_invalid_values_are_400(api: Api, form: dict[str, str], param: str) -> None:
    response = api.client.post(
        PATH, data={**VALID, **form}, files={"x": ("x", b"")}, headers=api.auth
    )
    assert_openai_error(response, 400, param, "invalid_value")
    assert count_jobs(api.store) == 0


def test_multipart_input_reference_that_is_no_image_is_refused(api: Api) -> None:
    image = {"input_reference": ("ref.jpg", JPEG_BYTES, "image/jpeg")}
    response = api.client.post(PATH, data=VALID, files=image, headers=api.auth)
    error = assert_openai_error(response, 400, "input_reference")
    assert "not an image" in error["message"]
    assert count_jobs(api.store) == 0


def test_multipart_body_size_is_limited(api: Api, settings: Settings) -> None:
    big = {"input_reference": ("ref.jpg", b"j" * (settings.create_body_limit + 1), "image/jpeg")}
    response = api.client.post(PATH, data=VALID, files=big, headers=api.auth)
    assert_openai_error(response, 413, code="request_too_large")

    def chunked() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n'
        for _ in range(settings.create_body_limit // 1024 + 1):
            yield b"p" * 1024
        yield b"\r\n--b--\r\n"

    headers = {**api.auth, "Content-Type": "multipart/form-data; boundary=b"}
    streamed = api.client.post(PATH, content=chunked(), headers=headers)
    assert "content-length" not in streamed.request.headers
    assert_openai_error(streamed, 413)
    assert count_jobs(api.store) == 0


def test_malformed_multipart_is_400(api: Api) -> None:
    headers = {**api.auth, "Content-Type": "multipart/form-data"}  # no boundary
    assert_openai_error(api.client.post(PATH, content=b"prompt=x", headers=headers), 400)
    assert count_jobs(api.store) == 0


REJECTED = [
    pytest.param({"size": "1920*1080"}, "size", id="size-format"),
    pytest.param({"size": 1920}, "size", id="size-number"),
    pytest.param({"size": "3840x2160"}, "size", id="size-beyond-the-model"),
    pytest.param({"size": "127x64"}, "size", id="size-odd"),
    pytest.param({"size": "16x16"}, "size", id="size-too-small"),
    pytest.param({"size": "51628x0"}, "size", id="size-zero"),
    pytest.param({"size": "0x0"}, "size", id="size-zeros"),
    pytest.param({"seconds": "0"}, "seconds", id="seconds-0"),
    pytest.param({"seconds": "21"}, "seconds", id="seconds-beyond-the-model"),
    pytest.param({"seconds": "4.5"}, "seconds", id="seconds-fraction"),
    pytest.param({"seconds": 5.0}, "seconds", id="seconds-float"),
    pytest.param({"seconds": True}, "seconds", id="seconds-bool"),
    pytest.param({"model": "sora-3"}, "model", id="model-unknown"),
    pytest.param({"model": 3}, "model", id="model-not-string"),
    pytest.param({"prompt": ""}, "prompt", id="prompt-empty"),
    pytest.param({"prompt": "   "}, "prompt", id="prompt-blank"),
    pytest.param({"prompt": "x" * 2501}, "prompt", id="prompt-oversize"),
    pytest.param({"prompt": None}, "prompt", id="prompt-null"),
    pytest.param({"negative_prompt": "n" * 2501}, "negative_prompt", id="negative-oversize"),
    pytest.param({"cfg_scale": 1.5}, "cfg_scale", id="cfg-above-1"),
    pytest.param({"cfg_scale": "0.5"}, "cfg_scale", id="cfg-string-in-json"),
    pytest.param({"generate_audio": "yes"}, "generate_audio", id="audio-string"),
    pytest.param({"seed": -1}, "seed", id="seed-negative"),
    pytest.param({"seed": 2**32}, "seed", id="seed-too-big"),
    pytest.param({"callback_url": "ftp://example.com/hook"}, "callback_url", id="callback"),
    pytest.param(
        {"input_reference": {"image_url": "http://x/y.jpg"}}, "input_reference", id="i2v-http"
    ),
]


@pytest.mark.parametrize(("changes", "param"), REJECTED)
def test_invalid_bodies_are_400_naming_the_param_and_store_nothing(
    api: Api, changes: dict[str, Any], param: str
) -> None:
    error = assert_openai_error(api.create({**VALID, **changes}), 400, param, "invalid_value")
    assert f"'{param}'" in error["message"]
    assert count_jobs(api.store) == 0


def test_unsupported_size_and_seconds_list_what_would_work(api: Api) -> None:
    size = assert_openai_error(api.create({**VALID, "size": "wide"}), 400, "size")
    assert all(s in size["message"] for s in ("720x1280", "1792x1024", "1920x1080", "WxH"))
    seconds = assert_openai_error(api.create({**VALID, "seconds": "four"}), 400, "seconds")
    assert all(s in seconds["message"] for s in ("'4'", "'8'", "'12'"))
    large = assert_openai_error(api.create({**VALID, "size": "2560x1440"}), 400, "size")
    assert "tiny-ltx2 makes even sizes with sides of 32..1920" in large["message"]
    long = assert_openai_error(api.create({**VALID, "seconds": "30"}), 400, "seconds")
    assert "tiny-ltx2 makes 1..20 s" in long["message"]


def test_missing_prompt_is_400(api: Api) -> None:
    assert_openai_error(api.create({"seconds": "4"}), 400, "prompt")
    assert count_jobs(api.store) == 0


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(b'{"prompt": ', "application/json", id="broken-json"),
        pytest.param(b"\xff\xfe", "application/json", id="not-utf8"),
        pytest.param(b'["a list"]', "application/json", id="json-array"),
        pytest.param(b"prompt=y", "application/x-www-form-urlencoded", id="urlencoded"),
        pytest.param(b'{"prompt": "p"}', "text/plain", id="text-plain"),
    ],
)
def test_unparseable_bodies_are_400_without_a_param(
    api: Api, content: bytes, content_type: str
) -> None:
    headers = {**api.auth, "Content-Type": content_type}
    assert_openai_error(api.client.post(PATH, content=content, headers=headers), 400, None)
    assert count_jobs(api.store) == 0


def test_oversize_json_body_is_413(api: Api, settings: Settings) -> None:
    assert_openai_error(api.create({**VALID, "padding": "z" * settings.create_body_limit}), 413)
    assert count_jobs(api.store) == 0


def test_a_full_queue_is_429_with_retry_after(settings: Settings) -> None:
    limited = settings.model_copy(update={"max_queued_per_key": 1, "retry_after_seconds": 7})
    with TestClient(create_app(limited)) as client:
        api = Api(client)
        api.created_id()
        response = api.create()
        assert_openai_error(response, 429, code="rate_limit_exceeded")
        assert response.headers["retry-after"] == "7"
        assert count_jobs(api.store) == 1


def test_an_unavailable_deployment_is_503(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def not_ready(*_: Any, **__: Any) -> None:
        raise ModelUnavailable("model tiny-ltx2 cannot be loaded here")

    monkeypatch.setattr(api.services.jobs, "submit", not_ready)
    assert_openai_error(api.create(), 503, code="service_unavailable")


def test_an_unexpected_failure_is_500(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        api = Api(client)

        def broken(*_: Any, **__: Any) -> None:
            raise RuntimeError("database on fire")

        monkeypatch.setattr(api.services.jobs, "get", broken)
        error = assert_openai_error(api.retrieve("anything"), 500)
        assert "on fire" not in error["message"]


# Auth and unknown ids


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Bearer kin_wrong"}, id="wrong-key"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="wrong-scheme"),
    ],
)
def test_every_route_is_401_without_a_valid_key(api: Api, headers: dict[str, str]) -> None:
    video_id = api.created_id()
    requests = [
        api.client.post(PATH, json=VALID, headers=headers),
        api.client.get(PATH, headers=headers),
        api.client.get(f"{PATH}/{video_id}", headers=headers),
        api.client.delete(f"{PATH}/{video_id}", headers=headers),
        api.client.get(f"{PATH}/{video_id}/content", headers=headers),
    ]
    for response in requests:
        assert_openai_error(response, 401, code="invalid_api_key")
        assert response.headers["www-authenticate"] == "Bearer"
    assert count_jobs(api.store) == 1


def test_unknown_and_foreign_ids_are_404(api: Api) -> None:
    video_id = api.created_id()
    for auth, target in [(api.other_auth, video_id), (api.auth, "no-such-video-000000")]:
        assert_openai_error(api.retrieve(target, auth), 404, code="not_found")
        delete = api.client.delete(f"{PATH}/{target}", headers=auth)
        assert_openai_error(delete, 404, code="not_found")
        content = api.client.get(f"{PATH}/{target}/content", headers=auth)
        assert_openai_error(content, 404, code="not_found")
    assert api.retrieve(video_id).json()["status"] == "queued"


def test_unknown_routes_and_methods_under_v1_videos_use_the_openai_shape(api: Api) -> None:
    assert_openai_error(api.client.put(PATH, headers=api.auth), 405, code="method_not_allowed")
    assert_openai_error(api.client.get(f"{PATH}/a/b/c", headers=api.auth), 404)


def test_other_paths_keep_the_envelope(api: Api) -> None:
    for response in [
        api.client.get("/v1/videosx"),
        api.client.get("/v2/nothing-here"),
        api.client.get(V2, params={"generation_id": "nope"}, headers=api.auth),
    ]:
        assert response.status_code == 404
        body = response.json()
        assert "error" not in body
        assert body["statusCode"] == 404 and body["path"] == response.request.url.path
    invalid = api.client.post(
        V2, json={"model": KLING, "prompt": "x", "duration": 7}, headers=api.auth
    )
    assert invalid.status_code == 400
    assert invalid.json()["errors"][0]["field"] == "duration"


# Retrieve


def test_retrieve_follows_the_job_through_its_states(api: Api) -> None:
    video_id = api.created_id()
    lease = api.store.claim(["tiny-ltx2"], "test-worker", 30)
    assert lease is not None and lease.job.id == video_id
    api.store.report_progress(lease, 42.9, "denoise")
    response = api.retrieve(video_id)
    assert response.headers["openai-poll-after-ms"] == "1000"  # read by the SDK's poll helper
    running = response.json()
    assert (running["status"], running["progress"], running["stage"]) == (
        "in_progress",
        42,
        "denoise",
    )
    assert running["queue_position"] is None and isinstance(running["started_at"], int)
    assert running["attempts"] == 1 and running["video_url"] is None

    api.store.release(lease)
    assert api.finish_next() == video_id
    response = api.retrieve(video_id)
    assert "openai-poll-after-ms" not in response.headers
    done = response.json()
    assert (done["status"], done["progress"], done["error"]) == ("completed", 100, None)
    assert isinstance(done["completed_at"], int) and done["completed_at"] >= done["created_at"]
    assert done["timings"] == TIMINGS
    assert (done["duration"], done["file_size"], done["has_audio"]) == (5.0, len(VIDEO_BYTES), True)
    assert "signature=" in done["video_url"] and done["video_url"].startswith("http://testserver/")
    assert "signature=" in done["thumbnail_url"]
    fetched = api.client.get(done["video_url"])  # signed: no credentials needed
    assert fetched.status_code == 200 and fetched.content == VIDEO_BYTES


@pytest.mark.parametrize(
    ("error_name", "code"),
    [("WorkerLost", "worker_lost"), ("GenerationFailed", "generation_failed")],
)
def test_a_failed_job_is_failed_with_a_snake_case_code(
    api: Api, error_name: str, code: str
) -> None:
    video_id = api.created_id()
    lease = api.store.claim(["tiny-ltx2"], "test-worker", 30)
    assert lease is not None
    api.store.fail(lease, error_name, "it broke", {})
    video = api.retrieve(video_id).json()
    assert video["status"] == "failed"
    assert video["error"] == {"code": code, "message": "it broke"}
    assert video["video_url"] is None and video["timings"] is None


def test_a_canceled_job_is_failed_with_code_canceled(api: Api) -> None:
    video_id = api.created_id()
    canceled = api.client.post(f"{V2}/cancel", params={"generation_id": video_id}, headers=api.auth)
    assert canceled.status_code == 200
    video = api.retrieve(video_id).json()
    assert video["status"] == "failed" and video["error"]["code"] == "canceled"


# List


def test_list_pages_newest_first_by_default(api: Api) -> None:
    ids = [api.created_id({**VALID, "seed": n}) for n in range(5)]
    first = api.list(limit=2).json()
    assert first["object"] == "list"
    assert [v["id"] for v in first["data"]] == ids[:-3:-1]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (ids[4], ids[3], True)
    assert all(v.keys() == VIDEO_KEYS for v in first["data"])
    second = api.list(limit=2, after=first["last_id"]).json()
    assert [v["id"] for v in second["data"]] == [ids[2], ids[1]] and second["has_more"]
    last = api.list(limit=2, after=second["last_id"]).json()
    assert [v["id"] for v in last["data"]] == [ids[0]] and not last["has_more"]
    assert [v["id"] for v in api.list().json()["data"]] == ids[::-1]


def test_list_pages_oldest_first_with_order_asc(api: Api) -> None:
    ids = [api.created_id({**VALID, "seed": n}) for n in range(5)]
    first = api.list(limit=3, order="asc").json()
    assert [v["id"] for v in first["data"]] == ids[:3] and first["has_more"]
    rest = api.list(limit=3, order="asc", after=first["last_id"]).json()
    assert [v["id"] for v in rest["data"]] == ids[3:] and not rest["has_more"]
    assert rest["first_id"] == ids[3] and rest["last_id"] == ids[4]


def test_list_shows_only_the_callers_videos(api: Api) -> None:
    mine = api.created_id()
    theirs = api.client.post(PATH, json=VALID, headers=api.other_auth).json()["id"]
    assert [v["id"] for v in api.list().json()["data"]] == [mine]
    listed = api.client.get(PATH, headers=api.other_auth).json()
    assert [v["id"] for v in listed["data"]] == [theirs]


def test_an_empty_list(api: Api) -> None:
    body = api.list().json()
    assert body == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


@pytest.mark.parametrize(
    ("params", "param"),
    [
        pytest.param({"limit": 0}, "limit", id="limit-0"),
        pytest.param({"limit": 101}, "limit", id="limit-101"),
        pytest.param({"limit": "many"}, "limit", id="limit-text"),
        pytest.param({"order": "newest"}, "order", id="order"),
        pytest.param({"after": "no-such-video"}, "after", id="after-unknown"),
    ],
)
def test_bad_list_queries_are_400(api: Api, params: dict[str, Any], param: str) -> None:
    api.created_id()
    assert_openai_error(api.list(**params), 400, param)


def test_after_another_keys_video_is_400(api: Api) -> None:
    foreign = api.client.post(PATH, json=VALID, headers=api.other_auth).json()["id"]
    assert_openai_error(api.list(after=foreign), 400, "after")


def test_limit_100_is_allowed(api: Api) -> None:
    assert api.list(limit=100).status_code == 200


# Delete


def test_delete_hides_the_video_from_both_contracts(api: Api) -> None:
    kept = api.created_id()
    gone = api.created_id()
    response = api.client.delete(f"{PATH}/{gone}", headers=api.auth)
    assert response.status_code == 200
    assert response.json() == {"id": gone, "object": "video.deleted", "deleted": True}
    assert_openai_error(api.retrieve(gone), 404)
    assert [v["id"] for v in api.list().json()["data"]] == [kept]
    v2 = api.client.get(V2, params={"generation_id": gone}, headers=api.auth)
    assert v2.status_code == 404 and v2.json()["statusCode"] == 404
    assert_openai_error(api.client.delete(f"{PATH}/{gone}", headers=api.auth), 404)
    assert_openai_error(api.list(after=gone), 400, "after")
    lease = api.store.claim(["tiny-ltx2"], "test-worker", 30)  # the deleted job never runs
    assert lease is not None and lease.job.id == kept
    assert api.store.claim(["tiny-ltx2"], "test-worker", 30) is None


def test_delete_removes_a_finished_videos_files(api: Api) -> None:
    video_id = api.created_id()
    api.finish_next()
    video_url = api.retrieve(video_id).json()["video_url"]
    assert api.client.delete(f"{PATH}/{video_id}", headers=api.auth).status_code == 200
    assert api.services.artifacts.keys(f"{video_id}/") == []
    assert api.client.get(video_url).status_code == 404
    assert_openai_error(api.content(video_id), 404)


# Content


def test_content_streams_the_video_and_the_thumbnail(api: Api) -> None:
    video_id = api.created_id()
    api.finish_next()
    video = api.content(video_id)
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert video.headers["content-length"] == str(len(VIDEO_BYTES))
    assert video.content == VIDEO_BYTES
    assert api.content(video_id, variant="video").content == VIDEO_BYTES
    thumbnail = api.content(video_id, variant="thumbnail")
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert thumbnail.content == JPEG_BYTES


def test_content_of_an_unfinished_video_is_400(api: Api) -> None:
    video_id = api.created_id()
    error = assert_openai_error(api.content(video_id), 400, "video_id")
    assert error["message"].endswith("is not completed (status: queued)")


def test_content_with_an_unknown_variant_is_400(api: Api) -> None:
    video_id = api.created_id()
    api.finish_next()
    assert_openai_error(api.content(video_id, variant="poster"), 400, "variant")


def test_a_missing_thumbnail_is_404(api: Api) -> None:
    video_id = api.created_id()
    api.finish_next(thumbnail=False)
    assert api.retrieve(video_id).json()["thumbnail_url"] is None
    assert_openai_error(api.content(video_id, variant="thumbnail"), 404)
    assert api.content(video_id).content == VIDEO_BYTES


# One set of jobs behind both contracts


def test_a_v2_generation_is_a_v1_video(api: Api) -> None:
    body = {
        "model": KLING,
        "prompt": "a drummer",
        "duration": 10,
        "aspect_ratio": "9:16",
        "seed": 9,
    }
    generation_id = api.client.post(V2, json=body, headers=api.auth).json()["id"]
    video = api.retrieve(generation_id).json()
    assert (video["id"], video["status"], video["seconds"], video["size"]) == (
        generation_id,
        "queued",
        "10",
        "54x96",  # the served model's own 9:16 size
    )
    assert (video["prompt"], video["seed"], video["model"]) == ("a drummer", 9, "tiny-ltx2")
    assert [v["id"] for v in api.list().json()["data"]] == [generation_id]
    api.finish_next()
    assert api.content(generation_id).content == VIDEO_BYTES


def test_a_v1_video_is_a_v2_generation(api: Api) -> None:
    video_id = api.created_id({**VALID, "seconds": "10", "size": "1080x1080", "seed": 4})
    polled = api.client.get(V2, params={"generation_id": video_id}, headers=api.auth).json()
    assert (polled["id"], polled["status"], polled["meta"]["seed"]) == (video_id, "queued", 4)
    api.finish_next()
    done = api.client.get(V2, params={"generation_id": video_id}, headers=api.auth).json()
    assert done["status"] == "completed" and done["video"]["file_size"] == len(VIDEO_BYTES)


def test_openapi_documents_the_routes(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    create = paths[PATH]["post"]
    assert create["tags"] == ["openai"]
    content = create["requestBody"]["content"]
    assert content.keys() == {"application/json", "multipart/form-data"}
    properties = content["application/json"]["schema"]["properties"]
    assert {"prompt", "model", "seconds", "size", "seed", "callback_url"} <= properties.keys()
    sizes, free_sizes = properties["size"]["anyOf"]
    assert sizes["enum"][:4] == ["720x1280", "1280x720", "1024x1792", "1792x1024"]
    assert sizes["default"] == properties["size"]["default"] == "720x1280"
    assert free_sizes["pattern"] and properties["seconds"]["default"] == "4"
    assert {"get"} <= paths[PATH].keys()
    assert {"get", "delete"} <= paths[f"{PATH}/{{video_id}}"].keys()
    assert "get" in paths[f"{PATH}/{{video_id}}/content"]
