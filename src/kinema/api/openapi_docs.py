"""What the OpenAPI document says about each operation: its bodies, its error codes, its auth.

Routes attach these with `responses=` and `openapi_extra=` only: nothing here validates or filters
a response at run time. `install_openapi` completes the document per deployment (the model ids it
serves, the bearer scheme) and drops what FastAPI documents but kinema never answers (422).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from kinema.catalog.registry import HOSTED_ALIASES, PRESET_ALIASES, ServedModels
from kinema.contracts.aimlapi import PROMPT_LIMIT, CreateGenerationBody

JsonSchema = dict[str, Any]
Responses = dict[int | str, dict[str, Any]]

BEARER = "bearerAuth"
SECURITY_SCHEMES = {
    BEARER: {"type": "http", "scheme": "bearer", "description": "An API key: `kin_…`"}
}
# openapi_extra of the operations that need an API key
AUTHENTICATED: dict[str, Any] = {"security": [{BEARER: []}]}
MODEL_ID = "ModelId"  # the component naming the model ids this deployment answers to
MODEL_ID_REF = {"$ref": f"#/components/schemas/{MODEL_ID}"}


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def absent_unless_set(description: str) -> Any:
    """A key the body leaves out (never sends as null) when it has no value."""
    return Field(default=None, description=description, json_schema_extra=_no_default)


# Error bodies


class FieldProblem(BaseModel):
    field: str
    message: str


class ErrorEnvelope(BaseModel):
    """The AI/ML API's error body (every route but /v1/videos…)."""

    requestId: UUID
    statusCode: int
    timestamp: datetime
    path: str
    message: str
    errors: list[FieldProblem] = absent_unless_set("On 400s: one entry per refused field")


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    """OpenAI's error body (the /v1/videos… routes)."""

    error: OpenAIErrorDetail


# The AI/ML API contract's bodies (render_generation)


class GenerationVideo(BaseModel):
    url: str = Field(description="A signed, expiring download URL")
    content_type: Literal["video/mp4"]
    file_name: str
    file_size: int
    duration: float
    width: int
    height: int
    fps: float
    has_audio: bool


class GenerationError(BaseModel):
    name: str = Field(description="e.g. Canceled, WorkerLost, GenerationFailed")
    message: str


class GenerationMeta(BaseModel):
    """The job's bookkeeping: these keys always, and e.g. requested_model, timings, webhook, and
    prompt_used (the model's rewrite of the prompt, when enhance_prompt ran)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str
    seed: int | None
    stage: str | None
    attempts: int


class Generation(BaseModel):
    id: str
    status: Literal["queued", "generating", "completed", "error"]
    progress: float = Field(ge=0, le=100)
    queue_position: int = absent_unless_set("Present while the job is queued")
    video: GenerationVideo = absent_unless_set("Present once the job is completed")
    error: GenerationError = absent_unless_set("Present when the job failed or was canceled")
    created_at: int
    started_at: int | None
    completed_at: int | None
    meta: GenerationMeta


# The OpenAI contract's bodies (render_video, list, delete)


class VideoError(BaseModel):
    code: str
    message: str


class VideoLora(BaseModel):
    name: str
    scale: float


class VideoInputImage(BaseModel):
    frame: int
    url: str = Field(description="A signed link to the image as kinema stored it")


class Video(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    object: Literal["video"]
    model: str
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int = Field(ge=0, le=100)
    created_at: int
    completed_at: int | None
    expires_at: int | None
    seconds: str
    size: str
    prompt: str
    remixed_from_video_id: str | None
    error: VideoError | None
    negative_prompt: str | None
    cfg_scale: float
    generate_audio: bool
    enhance_prompt: bool
    loras: list[VideoLora] = Field(description="The LoRAs the video was made with (kinema)")
    prompt_used: str | None = Field(
        description="The prompt the model ran: its own rewrite when enhance_prompt was asked for"
    )
    seed: int | None
    aspect_ratio: str
    stage: str | None
    queue_position: int | None
    started_at: int | None
    attempts: int
    timings: dict[str, float] | None
    video_url: str | None
    thumbnail_url: str | None
    duration: float | None
    file_size: int | None
    has_audio: bool | None
    callback_url: str | None
    input_images: list[VideoInputImage] = Field(
        description="The images the video was made from (frame 0: the first, -1: the last)"
    )


class VideoList(BaseModel):
    object: Literal["list"]
    data: list[Video]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"]
    deleted: Literal[True]


# Operations


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    models: list[str]


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str] = Field(description="'ok' per check: database, storage, workers:…")


class ModelEntry(BaseModel):
    id: str
    object: Literal["model"]
    owned_by: str
    description: str = absent_unless_set("Present on served models")
    live_workers: int = absent_unless_set(
        "Present on served models: workers of it seen in the last KINEMA_WORKER_LIVENESS_SECONDS"
    )
    alias_of: str = absent_unless_set("Present on aliases: the served model they name")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelEntry]


# Responses

ERROR_DESCRIPTIONS = {
    400: "Invalid request: a refused body, field or query parameter",
    401: "Missing or unknown API key",
    403: "The download link's signature is missing, invalid or expired",
    404: "No such resource (or it belongs to another key)",
    413: "The request body is larger than the server accepts",
    429: "Too many queued generations (for this key or in all); retry later",
    503: "Not ready: the database, the storage or a live worker per served model is missing",
}
ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "enum": ["Bearer"]}}},
    429: {
        "Retry-After": {
            "required": True,
            "description": "Seconds to wait before retrying",
            "schema": {"type": "integer", "minimum": 0},
        }
    },
}
BINARY = {"schema": {"type": "string", "format": "binary"}}


def _errors(model: type[BaseModel], statuses: Iterable[int]) -> Responses:
    responses: Responses = {}
    for status in statuses:
        response: dict[str, Any] = {"model": model, "description": ERROR_DESCRIPTIONS[status]}
        if status in ERROR_HEADERS:
            response["headers"] = ERROR_HEADERS[status]
        responses[status] = response
    return responses


def ok(model: type[BaseModel], description: str, **extra: Any) -> Responses:
    return {200: {"model": model, "description": description, **extra}}


def ok_content(description: str, media_types: Sequence[str], schema: JsonSchema) -> Responses:
    """A 200 that is not JSON; its route's response_class must name no media type of its own."""
    content = {media_type: {"schema": schema} for media_type in media_types}
    return {200: {"description": description, "content": content}}


def v2_responses(success: Responses, *errors: int) -> Responses:
    """`success` and the listed error statuses, in the AI/ML API's envelope."""
    return {**success, **_errors(ErrorEnvelope, errors)}


def openai_responses(success: Responses, *errors: int) -> Responses:
    """`success` and the listed error statuses, in OpenAI's error shape."""
    return {**success, **_errors(OpenAIError, errors)}


GENERATION = ok(Generation, "The generation, as the poll endpoint shows it")


def _event(names: list[str], data: type[BaseModel]) -> JsonSchema:
    """An event named one of `names` whose data is `data` as JSON."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": names},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": f"#/components/schemas/{data.__name__}"},
            },
        },
    }


# One event of the stream (Open API 3.1 has no itemSchema: an event stream's schema is an event's)
GENERATION_EVENT = {
    "anyOf": [
        _event(["progress", "completed", "error"], Generation),
        _event(["unauthorized", "not_found"], ErrorEnvelope),
    ]
}
GENERATION_EVENTS = ok_content(
    "Server-Sent Events: `progress` (data: the poll body) while the job is pending, then one "
    "`completed` or `error` with the final body, and the stream ends; `unauthorized` (data: the "
    "401 envelope) ends it if the key is revoked meanwhile, `not_found` (the 404 envelope) if "
    "the job is deleted",
    ["text/event-stream"],
    GENERATION_EVENT,
)
VIDEO = ok(Video, "The video object")
VIDEO_POLLED = ok(
    Video,
    "The video object",
    headers={
        "openai-poll-after-ms": {
            "description": "While the video is pending: how long to wait before the next retrieve",
            "schema": {"type": "integer"},
        }
    },
)
VIDEO_LIST = ok(VideoList, "A page of your videos")
VIDEO_DELETED = ok(VideoDeleted, "The video is deleted (a pending one canceled)")
DOWNLOAD_MEDIA_TYPES = ("video/mp4", "image/jpeg")
VIDEO_CONTENT = ok_content(
    "The mp4 (variant=video) or its JPEG still (variant=thumbnail)",
    DOWNLOAD_MEDIA_TYPES,
    BINARY["schema"],
)
TEXT = {"schema": {"type": "string"}}
DOWNLOAD = {
    **ok_content("The file", DOWNLOAD_MEDIA_TYPES, BINARY["schema"]),
    206: {
        "description": "The byte ranges a Range header asked for",
        "content": {**{t: BINARY for t in DOWNLOAD_MEDIA_TYPES}, "multipart/byteranges": BINARY},
    },
    400: {"description": "A malformed Range header", "content": {"text/plain": TEXT}},
    416: {"description": "The Range names no byte of the file", "content": {"text/plain": TEXT}},
}
RANGE_PARAMETER = {
    "name": "Range",
    "in": "header",
    "required": False,
    "description": "Byte ranges, e.g. `bytes=0-1023`",
    "schema": {"type": "string"},
}
DOWNLOAD_OPENAPI = {"parameters": [RANGE_PARAMETER]}
READY = ok(Readiness, "Ready to take work")
HEALTH = ok(Health, "The process is up")
MODELS = ok(ModelList, "Every model id this deployment answers to: served models, then aliases")
METRICS = ok_content(
    "Prometheus text exposition: queue depth, jobs by status, live workers, stage durations",
    ["text/plain"],
    {"type": "string"},
)


# Request bodies

NULL = {"type": "null"}
CALLBACK_URL = {"format": "uri", "pattern": "^[hH][tT][tT][pP][sS]?://[^\\s/]"}
CALLBACK_URL_DESCRIPTION = (
    "Where to POST the final poll body, signed (Standard Webhooks); private, loopback and "
    "link-local hosts are refused unless the deployment allows them"
)
PROMPT = {
    "type": "string",
    "minLength": 1,
    "maxLength": PROMPT_LIMIT,
    "pattern": r"\S",
    "description": f"1..{PROMPT_LIMIT} characters after stripping surrounding whitespace, "
    "with some visible text",
}


def _nullable(schema: JsonSchema) -> JsonSchema:
    """`schema` or null: an explicit null on an optional field asks for its default."""
    annotations: JsonSchema = {k: schema[k] for k in ("default", "description") if k in schema}
    branches = schema.get("anyOf") or [
        {k: v for k, v in schema.items() if k not in (*annotations, "title")}
    ]
    return {"anyOf": [*(b for b in branches if b != NULL), NULL], **annotations}


def _non_null(schema: JsonSchema) -> JsonSchema:
    """`schema` without its null branch (a form field is text: it cannot say null)."""
    branches = [b for b in schema.get("anyOf", ()) if b != NULL]
    if not branches:
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf" and (k, v) != ("default", None)}
    if len(branches) == 1:
        return {**branches[0], **rest}
    return {"anyOf": branches, **rest}


def _generation_properties() -> dict[str, JsonSchema]:
    """CreateGenerationBody's fields as the server really reads them."""
    schema = CreateGenerationBody.model_json_schema()
    fields: dict[str, JsonSchema] = schema["properties"]
    fields["model"] = {**MODEL_ID_REF, "description": "A served model id or an alias"}
    fields["prompt"] = PROMPT
    fields["duration"] = {
        "anyOf": [{"type": "integer", "enum": [5, 10]}, {"type": "string", "enum": ["5", "10"]}],
        "default": fields["duration"]["default"],
    }
    fields["callback_url"]["anyOf"][0].update(CALLBACK_URL)
    fields["callback_url"]["description"] = CALLBACK_URL_DESCRIPTION
    required = set(schema["required"])
    return {name: field if name in required else _nullable(field) for name, field in fields.items()}


def create_generation_openapi() -> dict[str, Any]:
    """openapi_extra of POST /v2/video/generations."""
    schema = {
        "type": "object",
        "required": ["model", "prompt"],
        "properties": _generation_properties(),
    }
    return {
        **AUTHENTICATED,
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
    }


def _choice(values: Sequence[str], default: str) -> JsonSchema:
    return {"type": "string", "enum": list(values), "default": default}


def _choice_or(values: Sequence[str], default: str, pattern: str, other: str) -> JsonSchema:
    """The documented values, or (a kinema extension) others matching `pattern`."""
    return {
        "anyOf": [_choice(values, default), {"type": "string", "pattern": pattern}],
        "default": default,
        "description": f"one of the listed values, or {other} the served model can make",
    }


def create_video_openapi(
    *,
    seconds: Sequence[str],
    default_seconds: str,
    sizes: Sequence[str],
    default_size: str,
    extensions: Sequence[str],
    aliases: Sequence[str],
) -> dict[str, Any]:
    """openapi_extra of POST /v1/videos: OpenAI's `seconds`/`size`, kinema's `extensions` and
    the model `aliases` OpenAI's clients send, as JSON or as a multipart form (a form field is
    text: it cannot be null)."""
    v2 = _generation_properties()
    properties = {name: v2[name] for name in ("prompt", *extensions)}
    properties["model"] = {
        "anyOf": [MODEL_ID_REF, {"type": "string", "enum": list(aliases)}, NULL],
        "description": "A served model id or an alias; left out or null: the served model",
    }
    properties["seconds"] = _choice_or(seconds, default_seconds, r"^\d{1,3}$", "whole seconds")
    properties["size"] = _choice_or(sizes, default_size, r"^[1-9]\d{0,4}x[1-9]\d{0,4}$", "any WxH")
    json_schema = {"type": "object", "required": ["prompt"], "properties": properties}
    form_properties = {name: _non_null(copy.deepcopy(p)) for name, p in properties.items()}
    form_schema = {**json_schema, "properties": form_properties}
    content = {
        "application/json": {"schema": json_schema},
        "multipart/form-data": {"schema": form_schema},
    }
    return {**AUTHENTICATED, "requestBody": {"required": True, "content": content}}


# The document


def accepted_model_ids(served: ServedModels) -> list[str]:
    """Every `model` a create accepts: the served ids, their preset aliases, the Kling ids."""
    presets = [alias for alias, target in PRESET_ALIASES.items() if target in served.served]
    return list(dict.fromkeys([*served.served, *presets, *HOSTED_ALIASES]))


def _responses(document: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            yield operation.get("responses", {})


def _drop_validation_errors(document: dict[str, Any]) -> None:
    """FastAPI documents a 422 on every operation with parameters; kinema answers those 400."""
    for responses in _responses(document):
        responses.pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def _drop_inferred_schemas(document: dict[str, Any]) -> None:
    """Where a route's return annotation (e.g. `dict[str, Any]`) gave FastAPI a schema of its
    own next to the documented model's $ref, keep the $ref alone."""
    for responses in _responses(document):
        for response in responses.values():
            for media in response.get("content", {}).values():
                schema = media.get("schema", {})
                if "$ref" in schema:
                    media["schema"] = {"$ref": schema["$ref"]}


def complete_document(document: dict[str, Any], served: ServedModels) -> dict[str, Any]:
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    components.setdefault("schemas", {})[MODEL_ID] = {
        "type": "string",
        "enum": accepted_model_ids(served),
    }
    _drop_validation_errors(document)
    _drop_inferred_schemas(document)
    return document


def install_openapi(app: FastAPI, served: ServedModels) -> None:
    """Make `app.openapi()` (and /openapi.json) the completed document, built once."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_document(build(), served)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
