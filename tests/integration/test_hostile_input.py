"""Input that parses but no contract can take: lone surrogates, NUL, absurd nesting and numbers,
invisible prompts, NaN. Each is a 400 in the route's own error shape and stores nothing; no
stored row makes a read fail. On SQLite and on a real PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from kinema.config import Settings
from kinema.domain import GenerationRequest, Job, JobStatus
from kinema.server import create_app
from kinema.store.migrations import migrate
from tests.conftest import count_jobs
from tests.pg import fresh_database

V2 = "/v2/video/generations"
V1 = "/v1/videos"
VALID = {"model": "tiny-ltx2", "prompt": "a heron lands on a pier"}
OPENAI_KEYS = {"message", "type", "param", "code"}


class Api:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        services = client.app.state.services  # type: ignore[attr-defined]
        self.store = services.store
        key, raw = services.keys.create("prober")
        self.owner = key.id
        self.auth = {"Authorization": f"Bearer {raw}"}

    def post_raw(self, path: str, content: bytes) -> Any:
        headers = {**self.auth, "Content-Type": "application/json"}
        return self.client.post(path, content=content, headers=headers)

    def get(self, path: str, **params: str) -> Any:
        return self.client.get(path, params=params, headers=self.auth)


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Api]:
    if request.param == "sqlite":
        with TestClient(create_app(settings)) as client:
            yield Api(client)
        return
    with fresh_database("kinema_hostile") as url:
        migrate(url)
        with TestClient(create_app(replace_store(settings, url))) as client:
            yield Api(client)


def replace_store(settings: Settings, url: str) -> Settings:
    return settings.model_copy(update={"store_url": url})


def assert_refused(response: Any, path: str, field: str) -> None:
    """A 400 in the contract's own shape, naming `field`."""
    assert response.status_code == 400, response.text
    body = response.json()
    if path == V1:
        assert body["error"].keys() == OPENAI_KEYS
        assert body["error"]["param"] == field, body
    else:
        assert body["statusCode"] == 400
        assert field in [error["field"] for error in body["errors"]], body


def raw_json(changes: dict[str, str]) -> bytes:
    """VALID with `changes` spliced in as raw JSON text (json.dumps would refuse some of it)."""
    text = json.dumps(VALID)[:-1]
    return (text + "".join(f", {json.dumps(k)}: {v}" for k, v in changes.items()) + "}").encode()


UNENCODABLE = [
    pytest.param("prompt", r'"a\ud800b"', id="surrogate-prompt"),
    pytest.param("negative_prompt", r'"\udfff"', id="surrogate-negative"),
    pytest.param("callback_url", r'"https://example.com/\ud83d"', id="surrogate-callback"),
    pytest.param("prompt", r'"a\u0000b"', id="nul-prompt"),
    pytest.param("callback_url", r'"https://example.com/\u0000"', id="nul-callback"),
]


@pytest.mark.parametrize("path", [V2, V1])
@pytest.mark.parametrize(("field", "value"), UNENCODABLE)
def test_text_that_cannot_be_stored_is_400_naming_the_field(
    api: Api, path: str, field: str, value: str
) -> None:
    assert_refused(api.post_raw(path, raw_json({field: value})), path, field)
    assert count_jobs(api.store) == 0


@pytest.mark.parametrize("path", [V2, V1])
def test_a_surrogate_in_a_multipart_or_extra_field_stores_nothing(api: Api, path: str) -> None:
    response = api.post_raw(path, raw_json({"comment": r'"\ud800"'}))
    assert_refused(response, path, "comment")
    assert count_jobs(api.store) == 0


def nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


def deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


BAD_JSON = [
    pytest.param(raw_json({"extra": nested(10_000)}), id="deep-array-in-extra"),
    pytest.param(raw_json({"extra": deep_object(10_000)}), id="deep-object-in-extra"),
    pytest.param(nested(10_000).encode(), id="deep-array-body"),
    pytest.param(deep_object(10_000).encode(), id="deep-object-body"),
    pytest.param(raw_json({"extra": nested(200)}), id="nested-200-levels"),
    pytest.param(raw_json({"seed": "9" * 5000}), id="5000-digit-integer"),
]


@pytest.mark.parametrize("path", [V2, V1])
@pytest.mark.parametrize("content", BAD_JSON)
def test_json_that_parses_badly_is_400_about_the_body(api: Api, path: str, content: bytes) -> None:
    response = api.post_raw(path, content)
    assert response.status_code == 400, response.text
    body = response.json()
    if path == V1:
        assert body["error"]["param"] is None and body["error"]["type"] == "invalid_request_error"
    else:
        assert [error["field"] for error in body["errors"]] == ["body"]
    assert count_jobs(api.store) == 0


INVISIBLE_PROMPTS = [
    pytest.param("\u200b\u200b\u200b", id="zero-width-spaces"),
    pytest.param("\u200d\u200c\u2060\ufeff", id="joiners-and-bom"),
    pytest.param("\u3164\u3164", id="hangul-filler"),
    pytest.param("\u2800 \u00a0", id="braille-blank-and-nbsp"),
    pytest.param("\u0301\u0302", id="combining-marks-alone"),
]


@pytest.mark.parametrize("path", [V2, V1])
@pytest.mark.parametrize("prompt", INVISIBLE_PROMPTS)
def test_a_prompt_of_invisible_characters_is_empty(api: Api, path: str, prompt: str) -> None:
    response = api.client.post(path, json={**VALID, "prompt": prompt}, headers=api.auth)
    assert_refused(response, path, "prompt")
    assert "visible" in response.text
    assert count_jobs(api.store) == 0


@pytest.mark.parametrize("path", [V2, V1])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_cfg_scale_that_is_no_number_says_so(api: Api, path: str, literal: str) -> None:
    response = api.post_raw(path, raw_json({"cfg_scale": literal}))
    assert_refused(response, path, "cfg_scale")
    assert "must be a number" in response.text
    assert count_jobs(api.store) == 0


def test_a_visible_prompt_with_zero_width_characters_is_kept(api: Api) -> None:
    prompt = "caf\u00e9 \u200bwith a zero-width space"
    response = api.client.post(V2, json={**VALID, "prompt": prompt}, headers=api.auth)
    assert response.status_code == 200, response.text
    assert api.store.get_job(response.json()["id"]).request.prompt == prompt


NUL_IDS = ["\x00", "abc\x00def", "%00"]


@pytest.mark.parametrize("job_id", NUL_IDS)
def test_an_id_with_nul_is_unknown_on_every_route(api: Api, job_id: str) -> None:
    in_path = quote(job_id, safe="")
    checks = [
        api.get(V2, generation_id=job_id),
        api.get(f"{V2}/events", generation_id=job_id),
        api.client.post(f"{V2}/cancel", params={"generation_id": job_id}, headers=api.auth),
        api.get(f"{V1}/{in_path}"),
        api.client.delete(f"{V1}/{in_path}", headers=api.auth),
        api.get(f"{V1}/{in_path}/content"),
    ]
    assert [response.status_code for response in checks] == [404] * len(checks)
    listed = api.get(V1, after=job_id)
    assert listed.status_code == 400 and listed.json()["error"]["param"] == "after"


def stored_job(owner: str, prompt: str) -> Job:
    request = GenerationRequest(model="tiny-ltx2", prompt=prompt, seed=7)
    return Job(
        id=f"stored-{time.monotonic_ns()}",
        owner=owner,
        request=request,
        status=JobStatus.QUEUED,
        created_at=time.time(),
        meta={"note": prompt},
    )


def test_a_stored_row_with_a_lone_surrogate_never_fails_a_read(api: Api) -> None:
    """As a row written before such input was refused: every read still answers."""
    job = stored_job(api.owner, "a\ud800b")
    api.store.add_job(job)
    reads = [api.get(V1), api.get(f"{V1}/{job.id}"), api.get(V2, generation_id=job.id)]
    assert [response.status_code for response in reads] == [200, 200, 200]
    assert reads[1].json()["prompt"] == "a\ud800b"  # escaped on the wire, read back as stored
    with api.client.stream(
        "GET", f"{V2}/events", params={"generation_id": job.id}, headers=api.auth
    ) as events:
        assert events.status_code == 200
        assert "progress" in next(events.iter_lines())


def test_a_download_link_with_an_absurdly_long_expiry_is_refused(api: Api) -> None:
    params = {"expires": "9" * 5000, "signature": "x"}
    response = api.client.get("/files/job/video.mp4", params=params)
    assert response.status_code == 403
    assert response.json()["statusCode"] == 403


def test_an_event_stream_with_no_pause_between_polls_still_streams(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"progress_min_interval": 0.0}))) as c:
        prober = Api(c)
        job_id = c.post(V2, json=VALID, headers=prober.auth).json()["id"]
        params = {"generation_id": job_id}
        with c.stream("GET", f"{V2}/events", params=params, headers=prober.auth) as events:
            assert events.status_code == 200
            assert next(events.iter_lines()) == "event: progress"
