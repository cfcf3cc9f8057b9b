"""The OpenAPI document (/openapi.json) against the app that serves it: auth, error codes, request
rules, media types, and real bodies validated against the schemas it documents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from kinema.catalog.registry import HOSTED_ALIASES, KLING_ALIASES, KLING_IMAGE_ALIASES
from kinema.config import Settings
from kinema.server import create_app
from tests.unit.test_openai_videos import Api

V2 = "/v2/video/generations"
V1 = "/v1/videos"
V1_VIDEO = f"{V1}/{{video_id}}"
ENVELOPE = "#/components/schemas/ErrorEnvelope"
OPENAI_ERROR = "#/components/schemas/OpenAIError"
# (method, path) → the error statuses it documents, and the body they come in
ERRORS: dict[tuple[str, str], tuple[set[str], str]] = {
    ("post", V2): ({"400", "401", "413", "429"}, ENVELOPE),
    ("get", V2): ({"400", "401", "404"}, ENVELOPE),
    ("get", f"{V2}/events"): ({"400", "401", "404"}, ENVELOPE),
    ("post", f"{V2}/cancel"): ({"400", "401", "404"}, ENVELOPE),
    ("post", V1): ({"400", "401", "413", "429"}, OPENAI_ERROR),
    ("get", V1): ({"400", "401"}, OPENAI_ERROR),
    ("get", V1_VIDEO): ({"401", "404"}, OPENAI_ERROR),
    ("delete", V1_VIDEO): ({"401", "404"}, OPENAI_ERROR),
    ("get", f"{V1_VIDEO}/content"): ({"400", "401", "404"}, OPENAI_ERROR),
    ("post", f"{V1_VIDEO}/remix"): ({"400", "401", "404", "413", "429"}, OPENAI_ERROR),
    ("post", f"{V1}/extensions"): ({"400", "401", "404", "413", "429"}, OPENAI_ERROR),
    ("post", f"{V1}/edits"): ({"400", "401", "404", "413", "429"}, OPENAI_ERROR),
    ("post", f"{V1}/characters"): ({"400", "401"}, OPENAI_ERROR),
    ("get", "/files/{key}"): ({"403", "404"}, ENVELOPE),
    ("get", "/readyz"): ({"503"}, ENVELOPE),
    ("get", "/healthz"): (set(), ENVELOPE),
    ("get", "/metrics"): (set(), ENVELOPE),
    ("get", "/v1/models"): (set(), ENVELOPE),
}
UNAUTHENTICATED = {"/files/{key}", "/readyz", "/healthz", "/metrics", "/v1/models"}


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    with TestClient(create_app(settings)) as client:
        yield Api(client)


@pytest.fixture
def spec(api: Api) -> dict[str, Any]:
    response = api.client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


def assert_matches(spec: dict[str, Any], ref: str, body: Any) -> None:
    """`body` is valid against the documented schema `ref` (refs resolved in the document)."""
    schema = {"$ref": ref, "components": spec["components"]}
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(body)]
    assert not errors, (ref, errors, body)


def response_ref(spec: dict[str, Any], method: str, path: str, status: str = "200") -> str:
    content = spec["paths"][path][method]["responses"][status]["content"]
    return str(content["application/json"]["schema"]["$ref"])


def test_the_document_is_valid_openapi_and_lists_every_operation(spec: dict[str, Any]) -> None:
    validate(spec)
    assert {(method, path) for method, path, _ in operations(spec)} == ERRORS.keys()


def test_the_authenticated_operations_declare_the_bearer_scheme(spec: dict[str, Any]) -> None:
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `kin_…`",
    }
    for method, path, operation in operations(spec):
        expected = None if path in UNAUTHENTICATED else [{"bearerAuth": []}]
        assert operation.get("security") == expected, (method, path)


def test_each_operation_documents_the_errors_it_answers_in_its_contract(
    spec: dict[str, Any],
) -> None:
    for method, path, operation in operations(spec):
        statuses, body = ERRORS[(method, path)]
        responses = operation["responses"]
        json_errors = {
            status
            for status, response in responses.items()
            if status >= "400" and "application/json" in response.get("content", {})
        }
        assert json_errors == statuses, (method, path, responses.keys())
        assert "422" not in responses, (method, path)  # kinema answers validation errors 400
        for status in statuses:
            assert response_ref(spec, method, path, status) == body, (method, path, status)
    create = spec["paths"][V2]["post"]["responses"]
    assert create["429"]["headers"]["Retry-After"]["required"] is True
    assert create["401"]["headers"]["WWW-Authenticate"]["required"] is True


def test_the_model_enum_is_what_creates_accept(api: Api, spec: dict[str, Any]) -> None:
    model_ids = spec["components"]["schemas"]["ModelId"]["enum"]
    assert model_ids == ["tiny-ltx2", "tiny-ltx2:fast", *HOSTED_ALIASES]  # not ltx-2: not served
    for model in [*model_ids, "ltx-2"]:
        created = api.client.post(V2, json={"model": model, "prompt": "p"}, headers=api.auth)
        if model in KLING_IMAGE_ALIASES:  # accepted, with the image they require
            assert created.json()["errors"] == [{"field": "image_url", "message": "Field required"}]
            continue
        assert created.status_code == (200 if model in model_ids else 400), (model, created.text)


def test_the_create_bodies_carry_the_model_enum_and_the_field_rules(
    spec: dict[str, Any],
) -> None:
    v2 = spec["paths"][V2]["post"]["requestBody"]["content"]["application/json"]["schema"]
    v1 = spec["paths"][V1]["post"]["requestBody"]["content"]
    assert v2["required"] == ["model", "prompt"]
    assert v2["properties"]["model"]["$ref"] == "#/components/schemas/ModelId"
    v1_json, v1_form = (
        v1[m]["schema"]["properties"] for m in ("application/json", "multipart/form-data")
    )
    assert v1_json["model"]["anyOf"][:2] == [
        {"$ref": "#/components/schemas/ModelId"},
        {"type": "string", "enum": ["sora-2", "sora-2-pro"]},
    ]
    for properties in (v2["properties"], v1_json, v1_form):
        assert properties["prompt"]["minLength"] == 1
        assert properties["prompt"]["maxLength"] == 2500
    seed_branches = v2["properties"]["seed"]["anyOf"]
    assert {"type": "integer", "maximum": 2**32 - 1, "minimum": 0} in seed_branches
    assert v2["properties"]["cfg_scale"]["anyOf"][0] == {
        "type": "number",
        "minimum": 0.0,
        "maximum": 1.0,
    }
    assert v2["properties"]["negative_prompt"]["anyOf"][0]["maxLength"] == 2500
    assert {"type": "null"} not in v1_form["seed"].get("anyOf", [])  # a form field is text


def test_non_json_answers_are_documented_with_their_media_types(spec: dict[str, Any]) -> None:
    def media_types(path: str) -> set[str]:
        return set(spec["paths"][path]["get"]["responses"]["200"]["content"])

    assert media_types("/metrics") == {"text/plain"}
    assert media_types(f"{V2}/events") == {"text/event-stream"}
    assert media_types(f"{V1_VIDEO}/content") == {"video/mp4", "image/jpeg"}
    assert media_types("/files/{key}") == {"video/mp4", "image/jpeg"}
    assert media_types("/readyz") == {"application/json"}


def test_real_v2_bodies_match_the_documented_schemas(api: Api, spec: dict[str, Any]) -> None:
    generation = response_ref(spec, "get", V2)
    created = api.client.post(
        V2, json={"model": "tiny-ltx2", "prompt": "a fox"}, headers=api.auth
    ).json()
    assert_matches(spec, generation, created)
    assert "queue_position" in created
    api.finish_next()
    done = api.client.get(V2, params={"generation_id": created["id"]}, headers=api.auth).json()
    assert done["status"] == "completed"
    assert_matches(spec, generation, done)
    other = api.client.post(V2, json={"model": KLING_ALIASES[0], "prompt": "p"}, headers=api.auth)
    canceled = api.client.post(
        f"{V2}/cancel", params={"generation_id": other.json()["id"]}, headers=api.auth
    ).json()
    assert canceled["status"] == "error"
    assert_matches(spec, generation, canceled)
    assert_matches(spec, ENVELOPE, api.client.get(V2, params={"generation_id": "x"}).json())
    assert_matches(spec, ENVELOPE, api.client.post(V2, json={}, headers=api.auth).json())
    assert_matches(spec, response_ref(spec, "get", "/healthz"), api.client.get("/healthz").json())
    assert_matches(
        spec, response_ref(spec, "get", "/v1/models"), api.client.get("/v1/models").json()
    )


def sse_events(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append(fields)
    return events


def test_real_events_match_the_documented_event_schema(api: Api, spec: dict[str, Any]) -> None:
    """Open API 3.1 has an event stream's schema describe one event (Schemathesis reads it so)."""
    media = spec["paths"][f"{V2}/events"]["get"]["responses"]["200"]["content"]
    event_schema = {**media["text/event-stream"]["schema"], "components": spec["components"]}
    created = api.client.post(V2, json={"model": "tiny-ltx2", "prompt": "p"}, headers=api.auth)
    api.finish_next()
    stream = api.client.get(
        f"{V2}/events", params={"generation_id": created.json()["id"]}, headers=api.auth
    )
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = sse_events(stream.text)
    assert [event["event"] for event in events] == ["completed"]
    validator = Draft202012Validator(event_schema)
    assert not list(validator.iter_errors(events[0]))
    assert list(validator.iter_errors({"event": "done", "data": "{}"}))  # not an event it sends
    assert_matches(spec, response_ref(spec, "get", V2), json.loads(events[0]["data"]))


def test_real_v1_bodies_match_the_documented_schemas(api: Api, spec: dict[str, Any]) -> None:
    video = response_ref(spec, "get", V1_VIDEO)
    first = api.created_id()
    assert_matches(spec, video, api.retrieve(first).json())
    api.finish_next()
    assert_matches(spec, video, api.retrieve(first).json())
    second = api.created_id({"prompt": "p", "seed": 7, "callback_url": None})
    assert_matches(spec, response_ref(spec, "get", V1), api.list().json())
    deleted = api.client.delete(f"{V1}/{second}", headers=api.auth).json()
    assert_matches(spec, response_ref(spec, "delete", V1_VIDEO), deleted)
    assert_matches(spec, OPENAI_ERROR, api.retrieve(second).json())
    assert_matches(spec, OPENAI_ERROR, api.create({"prompt": ""}).json())


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", V2, "GET, POST"),
        ("OPTIONS", V2, "GET, POST"),
        ("PUT", V1, "GET, POST"),
        ("PATCH", f"{V1}/some-id", "DELETE, GET"),
        ("POST", "/files/a/video.mp4", "GET, HEAD"),
        ("GET", f"{V2}/cancel", "POST"),
    ],
)
def test_a_method_a_path_does_not_serve_is_405_naming_every_method_it_does(
    api: Api, method: str, path: str, allowed: str
) -> None:
    response = api.client.request(method, path, headers=api.auth)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allowed
