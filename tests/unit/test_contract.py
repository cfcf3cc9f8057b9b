"""The AI/ML API v2 video contract, request by request, through the real ASGI app."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kinema.config import Settings
from kinema.server import create_app
from tests.conftest import count_jobs

PATH = "/v2/video/generations"
LEGACY = "/v2/generate/video/kling/generation"
KLING = "klingai/video-v2-6-pro-text-to-video"
VALID: dict[str, Any] = {"model": KLING, "prompt": "a fox runs through snow"}
ENVELOPE_KEYS = {"requestId", "statusCode", "timestamp", "path", "message"}
DEFAULTS: dict[str, Any] = {
    "aspect_ratio": "16:9",
    "duration": 5,
    "cfg_scale": 0.5,
    "generate_audio": True,
    "enhance_prompt": False,
}


class Api:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        services = client.app.state.services  # type: ignore[attr-defined]
        self.store = services.store
        _, self.key = services.keys.create("first")
        _, self.other_key = services.keys.create("second")
        self.auth = {"Authorization": f"Bearer {self.key}"}

    def create(self, body: Any, path: str = PATH, **kwargs: Any) -> Any:
        return self.client.post(path, json=body, headers=self.auth, **kwargs)

    def poll(self, generation_id: str, key: str | None = None, path: str = PATH) -> Any:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return self.client.get(path, params={"generation_id": generation_id}, headers=headers)


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    with TestClient(create_app(settings)) as client:
        yield Api(client)


def assert_envelope(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body.keys() >= ENVELOPE_KEYS
    assert body["statusCode"] == status
    assert body["path"] == response.request.url.path
    if field is not None:
        assert body["message"].startswith("Body validation error")
        assert field in [error["field"] for error in body["errors"]], body
    return body


ACCEPTED = [
    pytest.param({}, id="defaults"),
    pytest.param({"duration": 10}, id="duration-10"),
    pytest.param({"duration": "5"}, id="duration-string-5"),
    pytest.param({"duration": "10"}, id="duration-string-10"),
    pytest.param({"aspect_ratio": "9:16"}, id="portrait"),
    pytest.param({"aspect_ratio": "1:1"}, id="square"),
    pytest.param({"cfg_scale": 0}, id="cfg-0"),
    pytest.param({"cfg_scale": 1}, id="cfg-1"),
    pytest.param({"cfg_scale": 0.25}, id="cfg-fraction"),
    pytest.param({"generate_audio": False}, id="no-audio"),
    pytest.param({"seed": 0}, id="seed-0"),
    pytest.param({"seed": 2**32 - 1}, id="seed-max"),
    pytest.param({"negative_prompt": "blur" * 625}, id="negative-2500"),
    pytest.param({"prompt": "x" * 2500}, id="prompt-2500"),
    pytest.param({"prompt": "  padded  " + "y" * 2490}, id="prompt-2500-after-strip"),
    pytest.param({"enhance_prompt": True, "provider": "kling", "n": 1}, id="extras-ignored"),
    pytest.param({"model": "tiny-ltx2"}, id="served-id"),
    pytest.param({"model": "klingai/v2.1-master-text-to-video"}, id="kling-alias"),
]


@pytest.mark.parametrize("changes", ACCEPTED)
def test_valid_bodies_are_queued(api: Api, changes: dict[str, Any]) -> None:
    response = api.create({**VALID, **changes})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert len(body["id"]) >= 21
    assert body["meta"]["model"] == "tiny-ltx2"
    job = api.store.get_job(body["id"])
    assert job is not None
    stored = job.request
    expected = {**DEFAULTS, **changes}
    assert stored.aspect_ratio == expected["aspect_ratio"]
    assert stored.duration == int(expected["duration"])
    assert stored.cfg_scale == expected["cfg_scale"]
    assert stored.generate_audio is expected["generate_audio"]
    assert stored.prompt == expected.get("prompt", VALID["prompt"]).strip()
    if "seed" in changes:
        assert stored.seed == changes["seed"] == body["meta"]["seed"]


def test_null_optional_fields_take_their_defaults(api: Api) -> None:
    nulls = {field: None for field in DEFAULTS} | {"negative_prompt": None, "seed": None}
    body = api.create({**VALID, **nulls}).json()
    job = api.store.get_job(body["id"])
    assert job is not None
    assert (job.request.aspect_ratio, job.request.duration) == ("16:9", 5)
    assert (job.request.cfg_scale, job.request.generate_audio) == (0.5, True)
    assert job.request.seed is not None


REJECTED = [
    pytest.param({"model": None}, "model", id="model-null"),
    pytest.param({"model": "sora-2"}, "model", id="model-unknown"),
    pytest.param({"model": 3}, "model", id="model-not-string"),
    pytest.param({"prompt": ""}, "prompt", id="prompt-empty"),
    pytest.param({"prompt": "   "}, "prompt", id="prompt-blank"),
    pytest.param({"prompt": "x" * 2501}, "prompt", id="prompt-oversize"),
    pytest.param({"prompt": 42}, "prompt", id="prompt-not-string"),
    pytest.param({"aspect_ratio": "4:3"}, "aspect_ratio", id="aspect-unknown"),
    pytest.param({"aspect_ratio": 1.77}, "aspect_ratio", id="aspect-number"),
    pytest.param({"duration": 7}, "duration", id="duration-7"),
    pytest.param({"duration": "7"}, "duration", id="duration-string-7"),
    pytest.param({"duration": 5.5}, "duration", id="duration-float"),
    pytest.param({"duration": True}, "duration", id="duration-bool"),
    pytest.param({"negative_prompt": "n" * 2501}, "negative_prompt", id="negative-oversize"),
    pytest.param({"negative_prompt": 5}, "negative_prompt", id="negative-not-string"),
    pytest.param({"cfg_scale": -0.01}, "cfg_scale", id="cfg-negative"),
    pytest.param({"cfg_scale": 1.01}, "cfg_scale", id="cfg-above-1"),
    pytest.param({"cfg_scale": "0.5"}, "cfg_scale", id="cfg-string"),
    pytest.param({"cfg_scale": True}, "cfg_scale", id="cfg-bool"),
    pytest.param({"generate_audio": "yes"}, "generate_audio", id="audio-string"),
    pytest.param({"generate_audio": 1}, "generate_audio", id="audio-int"),
    pytest.param({"seed": -1}, "seed", id="seed-negative"),
    pytest.param({"seed": 2**32}, "seed", id="seed-too-big"),
    pytest.param({"seed": 1.5}, "seed", id="seed-float"),
    pytest.param({"seed": "7"}, "seed", id="seed-string"),
    pytest.param({"enhance_prompt": "no"}, "enhance_prompt", id="enhance-string"),
]


@pytest.mark.parametrize(("changes", "field"), REJECTED)
def test_invalid_bodies_are_400_naming_the_field_and_store_nothing(
    api: Api, changes: dict[str, Any], field: str
) -> None:
    response = api.create({**VALID, **changes})
    assert_envelope(response, 400, field)
    assert count_jobs(api.store) == 0


@pytest.mark.parametrize("missing", ["model", "prompt"])
def test_missing_required_fields(api: Api, missing: str) -> None:
    body = {k: v for k, v in VALID.items() if k != missing}
    assert_envelope(api.create(body), 400, missing)
    assert count_jobs(api.store) == 0


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(b'{"model": ', "application/json", id="broken-json"),
        pytest.param(b"\xff\xfe", "application/json", id="not-utf8"),
        pytest.param(b'["a list"]', "application/json", id="json-array"),
        pytest.param(b"model=x&prompt=y", "application/x-www-form-urlencoded", id="form"),
        pytest.param(b'{"model": "tiny-ltx2", "prompt": "p"}', "text/plain", id="text-plain"),
    ],
)
def test_unparseable_bodies_are_400(api: Api, content: bytes, content_type: str) -> None:
    response = api.client.post(
        PATH, content=content, headers={**api.auth, "Content-Type": content_type}
    )
    assert_envelope(response, 400, "body")
    assert count_jobs(api.store) == 0


def test_oversize_body_is_413(api: Api, settings: Settings) -> None:
    limit = settings.create_body_limit
    response = api.create({**VALID, "padding": "z" * limit})
    assert_envelope(response, 413)

    def chunked() -> Iterator[bytes]:
        yield b'{"model": "tiny-ltx2", "prompt": "p", "padding": "'
        for _ in range(limit // 1024 + 1):
            yield b"z" * 1024
        yield b'"}'

    headers = {**api.auth, "Content-Type": "application/json"}
    streamed = api.client.post(PATH, content=chunked(), headers=headers)
    assert "content-length" not in streamed.request.headers
    assert_envelope(streamed, 413)
    assert count_jobs(api.store) == 0


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Bearer kin_wrong"}, id="wrong-key"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="wrong-scheme"),
    ],
)
def test_requests_without_a_valid_key_are_401(api: Api, headers: dict[str, str]) -> None:
    assert_envelope(api.client.post(PATH, json=VALID, headers=headers), 401)
    assert_envelope(api.client.get(PATH, params={"generation_id": "x"}, headers=headers), 401)
    assert count_jobs(api.store) == 0


def test_revoked_key_is_401(api: Api) -> None:
    api.client.app.state.services.keys.revoke("first")  # type: ignore[attr-defined]
    assert_envelope(api.create(VALID), 401)


def test_poll_shows_a_queued_job_with_its_queue_position(api: Api) -> None:
    first = api.create(VALID).json()["id"]
    second = api.create({**VALID, "seed": 5}).json()["id"]
    body = api.poll(second).json()
    assert body["status"] == "queued"
    assert body["queue_position"] == 1
    assert api.poll(first).json()["queue_position"] == 0
    assert body["meta"]["seed"] == 5
    assert "video" not in body and "error" not in body


def test_legacy_path_serves_the_same_jobs(api: Api) -> None:
    created = api.create(VALID, path=LEGACY)
    assert created.status_code == 200
    generation_id = created.json()["id"]
    assert api.poll(generation_id).json()["status"] == "queued"
    assert api.poll(generation_id, path=LEGACY).json()["id"] == generation_id


def test_another_keys_job_is_404_like_an_unknown_id(api: Api) -> None:
    generation_id = api.create(VALID).json()["id"]
    assert_envelope(api.poll(generation_id, key=api.other_key), 404)
    assert_envelope(api.poll("no-such-generation-id-000000"), 404)


def test_poll_without_generation_id_is_400(api: Api) -> None:
    response = api.client.get(PATH, headers=api.auth)
    body = assert_envelope(response, 400)
    assert body["errors"][0]["field"] == "generation_id"


def test_random_seed_is_recorded(api: Api) -> None:
    body = api.create(VALID).json()
    assert 0 <= body["meta"]["seed"] < 2**32
    assert api.poll(body["id"]).json()["meta"]["seed"] == body["meta"]["seed"]


def test_unknown_route_and_method_use_the_envelope(api: Api) -> None:
    assert_envelope(api.client.get("/v2/nothing-here"), 404)
    assert_envelope(api.client.delete(PATH, headers=api.auth), 405)


def test_openapi_and_health(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    create = spec["paths"][PATH]["post"]
    schema = create["requestBody"]["content"]["application/json"]["schema"]
    assert {"model", "prompt", "duration", "cfg_scale"} <= schema["properties"].keys()
    health = api.client.get("/healthz").json()
    assert health["status"] == "ok" and health["models"] == ["tiny-ltx2"]
    models = [m["id"] for m in api.client.get("/v1/models").json()["data"]]
    assert "tiny-ltx2" in models and KLING in models


def test_a_frame_larger_than_the_deployment_makes_is_a_400_naming_each_contracts_field(
    settings: Settings,
) -> None:
    """KINEMA_MAX_OUTPUT_PIXELS: the operator's cap for the memory of its GPUs, below what the
    model could make; each contract's own size field is named, with a size that fits."""
    capped = settings.model_copy(update={"max_output_pixels": 1280 * 720})
    with TestClient(create_app(capped)) as client:
        api = Api(client)
        ltxv = api.create({"model": "ltxv/ltxv-2-fast", "prompt": "a fox"})  # 1080p by default
        body = assert_envelope(ltxv, 400, "resolution")
        [error] = body["errors"]
        assert error["message"] == (
            "1920x1080 is more than this deployment makes: at most 921,600 pixels a frame "
            "(KINEMA_MAX_OUTPUT_PIXELS, set for the memory of its GPUs); 1280x720 fits"
        )
        served = api.create({"model": "tiny-ltx2", "prompt": "a fox", "width": 1920, "height": 800})
        assert_envelope(served, 400, "width")
        video = client.post(
            "/v1/videos", json={"prompt": "a fox", "size": "1080x1920"}, headers=api.auth
        )
        assert video.status_code == 400 and video.json()["error"]["param"] == "size"
        assert (
            api.create(
                {"model": "tiny-ltx2", "prompt": "a fox", "width": 1280, "height": 720}
            ).status_code
            == 200
        )
        assert count_jobs(api.store) == 1


def test_a_known_model_that_is_not_served_is_a_400_naming_what_is(api: Api) -> None:
    body = assert_envelope(api.create({**VALID, "model": "wan-2.2"}), 400, "model")
    assert body["errors"] == [
        {
            "field": "model",
            "message": "'wan-2.2' is not served here; served: tiny-ltx2 (or a hosted model id)",
        }
    ]
    unknown = assert_envelope(api.create({**VALID, "model": "nope"}), 400, "model")
    assert unknown["errors"][0]["message"].startswith("must be one of: tiny-ltx2, klingai/")
    assert count_jobs(api.store) == 0


def test_the_model_list_counts_each_served_models_live_workers(api: Api) -> None:
    listed = {m["id"]: m for m in api.client.get("/v1/models").json()["data"]}
    assert listed["tiny-ltx2"]["live_workers"] == 0
    api.store.register_worker("w1", ["tiny-ltx2"])
    listed = {m["id"]: m for m in api.client.get("/v1/models").json()["data"]}
    assert listed["tiny-ltx2"]["live_workers"] == 1
    assert "live_workers" not in listed[KLING] and listed[KLING]["alias_of"] == "tiny-ltx2"


def test_an_image_for_a_text_only_model_is_a_400_naming_each_contracts_image_field(
    settings: Settings,
) -> None:
    """Wan 2.2 A14B makes video from text only: a first frame is refused at create time, named
    as each contract names it, and nothing is queued."""
    import base64
    import io

    from tests.pictures import half_white

    buffer = io.BytesIO()
    half_white(96, 54).save(buffer, "PNG")  # 16:9, which A14B makes
    image = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    text_only = settings.model_copy(update={"model": "wan-2.2:a14b"})
    with TestClient(create_app(text_only)) as client:
        api = Api(client)
        kling = api.create(
            {
                "model": "klingai/video-v2-6-pro-image-to-video",
                "prompt": "a fox",
                "image_url": image,
            }
        )
        [error] = assert_envelope(kling, 400, "image_url")["errors"]
        assert error["message"] == "wan-2.2:a14b makes video from text only"
        video = client.post(
            "/v1/videos",
            json={"prompt": "a fox", "input_reference": {"image_url": image}},
            headers=api.auth,
        )
        assert video.status_code == 400, video.text
        assert video.json()["error"]["param"] == "input_reference"
        assert count_jobs(api.store) == 0
