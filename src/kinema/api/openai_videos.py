"""OpenAI's videos API (/v1/videos), served from the same jobs as the /v2 contract.

Creates are validated by the /v2 body model (CreateGenerationBody) after renaming OpenAI's
`seconds`/`size` to kinema's `duration`/`aspect_ratio`; errors name OpenAI's params.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.formparsers import MultiPartException, MultiPartParser

from kinema.api.deps import (
    base_url,
    body_limit,
    current_key,
    json_object_body,
    limited_stream,
    media_type,
    services,
)
from kinema.api.errors import WHOLE_BODY, invalid_params_message
from kinema.api.json_body import check_values
from kinema.api.offload import in_thread
from kinema.api.openapi_docs import (
    AUTHENTICATED,
    VIDEO,
    VIDEO_CONTENT,
    VIDEO_DELETED,
    VIDEO_LIST,
    VIDEO_POLLED,
    create_video_openapi,
    openai_responses,
)
from kinema.catalog.registry import FULL_HD_SIZES
from kinema.contracts.aimlapi import CreateGenerationBody
from kinema.contracts.fields import field_errors_from_pydantic
from kinema.domain import ApiKey, Job, JobStatus
from kinema.errors import FieldError, ValidationFailed
from kinema.service import JobView, Variant

PATH = "/v1/videos"
DEFAULT_SIZE = "{}x{}".format(
    *FULL_HD_SIZES[CreateGenerationBody.model_fields["aspect_ratio"].default]
)
ASPECT_RATIO_BY_SIZE = {f"{w}x{h}": ratio for ratio, (w, h) in FULL_HD_SIZES.items()}
SECONDS = tuple(str(s) for s in get_args(CreateGenerationBody.model_fields["duration"].annotation))
EXTENSIONS = ("negative_prompt", "cfg_scale", "generate_audio", "seed", "callback_url")
PARAM_BY_FIELD = {"duration": "seconds", "aspect_ratio": "size"}
MEDIA_TYPES: dict[Variant, str] = {"video": "video/mp4", "thumbnail": "image/jpeg"}
MAX_FORM_FILES = 4
MAX_FORM_FIELDS = 64
LIST_LIMIT_DEFAULT = 20
LIST_LIMIT_MAX = 100
# OpenAI's video model ids: clients written for them get the served model (like Kling ids on /v2).
SORA_ALIASES = ("sora-2", "sora-2-pro")
POLL_AFTER_MS = "1000"  # the SDK's poll helpers wait this long between retrieves

OPENAI_STATUS = {
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "in_progress",
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELED: "failed",
}

router = APIRouter(tags=["openai"])
Key = Annotated[ApiKey, Depends(current_key)]


# The video object


def _timestamp(value: float | None) -> int | None:
    return None if value is None else int(value)


def _snake_case(name: str) -> str:
    """'WorkerLost' → 'worker_lost', 'CUDAOutOfMemory' → 'cuda_out_of_memory'."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _error(job: Job) -> dict[str, str] | None:
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELED):
        return None
    name = job.error_name or (
        "Canceled" if job.status is JobStatus.CANCELED else "GenerationFailed"
    )
    return {"code": _snake_case(name), "message": job.error_message or ""}


def _progress(job: Job) -> int:
    return 100 if job.status is JobStatus.COMPLETED else max(0, min(100, math.floor(job.progress)))


def render_video(view: JobView) -> dict[str, Any]:
    job, request = view.job, view.job.request
    completed = job.status is JobStatus.COMPLETED
    artifact = job.artifact if completed else None
    return {
        "id": job.id,
        "object": "video",
        "model": request.model,
        "status": OPENAI_STATUS[job.status],
        "progress": _progress(job),
        "created_at": int(job.created_at),
        "completed_at": _timestamp(job.completed_at),
        "expires_at": _timestamp(view.expires_at),
        "seconds": str(request.duration),
        "size": "{}x{}".format(*FULL_HD_SIZES[request.aspect_ratio]),
        "prompt": request.prompt,
        "remixed_from_video_id": None,
        "error": _error(job),
        # kinema's extensions
        "negative_prompt": request.negative_prompt,
        "cfg_scale": request.cfg_scale,
        "generate_audio": request.generate_audio,
        "seed": request.seed,
        "aspect_ratio": request.aspect_ratio,
        "stage": job.stage,
        "queue_position": view.queue_position,
        "started_at": _timestamp(job.started_at),
        "attempts": job.attempts,
        "timings": job.meta.get("timings") if completed else None,
        "video_url": view.video_url,
        "thumbnail_url": view.thumbnail_url,
        "duration": artifact.duration if artifact else None,
        "file_size": artifact.file_size if artifact else None,
        "has_audio": artifact.has_audio if artifact else None,
        "callback_url": job.callback_url,
    }


# The create body


def _invalid(errors: list[FieldError]) -> ValidationFailed:
    """A 400 naming OpenAI's params instead of kinema's /v2 fields."""
    renamed = [FieldError(PARAM_BY_FIELD.get(e.field, e.field), e.message) for e in errors]
    return ValidationFailed(invalid_params_message(renamed), renamed)


def _invalid_param(param: str, message: str) -> ValidationFailed:
    return _invalid([FieldError(param, message)])


def _duration(seconds: Any) -> int:
    text = str(seconds) if type(seconds) is int else seconds
    if isinstance(text, str) and text.strip() in SECONDS:
        return int(text)
    allowed = ", ".join(f"'{s}'" for s in SECONDS)
    raise _invalid_param("seconds", f"{seconds!r} is not supported; use one of {allowed}")


def _aspect_ratio(size: Any) -> str:
    ratio = ASPECT_RATIO_BY_SIZE.get(size.strip().lower()) if isinstance(size, str) else None
    if ratio is not None:
        return ratio
    allowed = ", ".join(f"'{s}'" for s in ASPECT_RATIO_BY_SIZE)
    raise _invalid_param("size", f"{size!r} is not supported; use one of {allowed}")


def generation_fields(body: dict[str, Any], default_model: str) -> dict[str, Any]:
    """The /v2 body an OpenAI create body asks for (unknown keys are ignored)."""
    if body.get("input_reference") is not None:
        message = "image-to-video (input_reference) is not supported by the served model"
        raise _invalid_param("input_reference", message)
    fields = {name: body[name] for name in ("prompt", *EXTENSIONS) if name in body}
    model = body.get("model")
    fields["model"] = default_model if model is None or model in SORA_ALIASES else model
    if body.get("seconds") is not None:
        fields["duration"] = _duration(body["seconds"])
    if body.get("size") is not None:
        fields["aspect_ratio"] = _aspect_ratio(body["size"])
    return fields


def parse_video_body(body: dict[str, Any], default_model: str) -> CreateGenerationBody:
    try:
        return CreateGenerationBody.model_validate(generation_fields(body, default_model))
    except ValidationError as exc:
        raise _invalid(field_errors_from_pydantic(list(exc.errors()))) from None


def _form_bool(text: str) -> bool | str:
    return {"true": True, "1": True, "false": False, "0": False}.get(text.strip().lower(), text)


def _form_number(convert: type[int] | type[float]) -> Callable[[str], int | float | str]:
    def parse(text: str) -> int | float | str:
        try:
            return convert(text.strip())
        except ValueError:
            return text  # left for the validator to reject, naming the field

    return parse


# Form values are text; these fields are typed in JSON.
FORM_COERCIONS = {
    "cfg_scale": _form_number(float),
    "seed": _form_number(int),
    "generate_audio": _form_bool,
}


def _form_value(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value  # an uploaded file
    if value == "" and name != "prompt":
        return None  # an empty form input asks for the default
    coerce = FORM_COERCIONS.get(name)
    return coerce(value) if coerce else value


async def _form_body(request: Request, limit: int) -> dict[str, Any]:
    stream = limited_stream(request, limit)
    parser = MultiPartParser(
        request.headers,
        stream,
        max_files=MAX_FORM_FILES,
        max_fields=MAX_FORM_FIELDS,
        max_part_size=limit,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise _body_error(f"invalid multipart/form-data body: {exc.message}") from None
    try:
        return {name: _form_value(name, value) for name, value in form.multi_items()}
    finally:
        await form.close()


def _body_error(message: str) -> ValidationFailed:
    return ValidationFailed(message, [FieldError(WHOLE_BODY, message)])


def _openai_body_error(exc: ValidationFailed) -> ValidationFailed:
    """A body refused before validation, in OpenAI's words: about a param, or the whole body."""
    if exc.errors and exc.errors[0].field != WHOLE_BODY:
        return _invalid(exc.errors)
    return _body_error(exc.errors[0].message if exc.errors else exc.message)


def _check_form_text(body: dict[str, Any]) -> None:
    try:
        check_values(body)
    except ValidationFailed as exc:
        raise _openai_body_error(exc) from None


async def create_body(request: Request) -> dict[str, Any]:
    """The create body as a dict, from JSON or multipart/form-data, within the body-size limit."""
    limit = body_limit(request)
    content_type = media_type(request)
    if content_type == "multipart/form-data":
        body = await _form_body(request, limit)
        _check_form_text(body)
        return body
    if content_type == "application/json":
        try:
            return await json_object_body(request)
        except ValidationFailed as exc:
            raise _openai_body_error(exc) from None
    raise _body_error("Content-Type must be application/json or multipart/form-data")


def _create_schema() -> dict[str, Any]:
    """The create body for the OpenAPI document (validation is parse_video_body's)."""
    return create_video_openapi(
        seconds=SECONDS,
        default_seconds=str(CreateGenerationBody.model_fields["duration"].default),
        sizes=list(ASPECT_RATIO_BY_SIZE),
        default_size=DEFAULT_SIZE,
        extensions=EXTENSIONS,
        aliases=SORA_ALIASES,
    )


# The routes


def create_video(
    request: Request, key: Key, body: Annotated[dict[str, Any], Depends(create_body)]
) -> dict[str, Any]:
    jobs = services(request).jobs
    parsed = parse_video_body(body, jobs.served.default)
    try:
        job = jobs.submit(key, parsed.to_request(), parsed.callback_url)
    except ValidationFailed as exc:  # the model or the callback_url was refused
        raise _invalid(exc.errors or [FieldError(WHOLE_BODY, exc.message)]) from None
    return render_video(jobs.view(job, base_url(request)))


def list_videos(
    request: Request,
    key: Key,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT,
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    try:
        page = services(request).jobs.list(
            key, base_url(request), after=after or None, limit=limit, newest_first=order == "desc"
        )
    except ValidationFailed as refused:
        raise _invalid(refused.errors) from None
    data = [render_video(view) for view in page.views]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": page.has_more,
    }


async def retrieve_video(
    request: Request, response: Response, key: Key, video_id: str
) -> dict[str, Any]:
    jobs = services(request).jobs
    video = render_video(await in_thread(jobs.get, key, video_id, base_url(request)))
    if video["status"] in ("queued", "in_progress"):
        response.headers["openai-poll-after-ms"] = POLL_AFTER_MS
    return video


def delete_video(request: Request, key: Key, video_id: str) -> dict[str, Any]:
    job = services(request).jobs.delete(key, video_id)
    return {"id": job.id, "object": "video.deleted", "deleted": True}


def download_video_content(
    request: Request, key: Key, video_id: str, variant: Variant = "video"
) -> StreamingResponse:
    jobs = services(request).jobs
    job = jobs.owned(key, video_id)
    if job.status is not JobStatus.COMPLETED or job.artifact is None:
        status = OPENAI_STATUS[job.status]
        raise _invalid_param("video_id", f"video {video_id!r} is not completed (status: {status})")
    artifact_key = jobs.content_key(job, variant)
    headers = {"Content-Length": str(job.artifact.file_size)} if variant == "video" else {}
    return StreamingResponse(
        jobs.open_artifact(artifact_key), media_type=MEDIA_TYPES[variant], headers=headers
    )


router.add_api_route(
    PATH,
    create_video,
    methods=["POST"],
    openapi_extra=_create_schema(),
    summary="Create a video (OpenAI-compatible)",
    responses=openai_responses(VIDEO, 400, 401, 413, 429),
)
router.add_api_route(
    PATH,
    list_videos,
    methods=["GET"],
    summary="List your videos",
    responses=openai_responses(VIDEO_LIST, 400, 401),
    openapi_extra=AUTHENTICATED,
)
router.add_api_route(
    f"{PATH}/{{video_id}}",
    retrieve_video,
    methods=["GET"],
    summary="A video",
    responses=openai_responses(VIDEO_POLLED, 401, 404),
    openapi_extra=AUTHENTICATED,
)
router.add_api_route(
    f"{PATH}/{{video_id}}",
    delete_video,
    methods=["DELETE"],
    summary="Delete a video (a pending one is canceled)",
    responses=openai_responses(VIDEO_DELETED, 401, 404),
    openapi_extra=AUTHENTICATED,
)
router.add_api_route(
    f"{PATH}/{{video_id}}/content",
    download_video_content,
    methods=["GET"],
    summary="Download a finished video's mp4 or its JPEG thumbnail",
    response_class=StreamingResponse,
    responses=openai_responses(VIDEO_CONTENT, 400, 401, 404),
    openapi_extra=AUTHENTICATED,
)
