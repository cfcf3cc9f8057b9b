"""OpenAI's videos API (/v1/videos), served from the same jobs as the /v2 contract.

Creates are validated by the /v2 body model (CreateGenerationBody) after renaming OpenAI's
`seconds`/`size` to kinema's `duration`/`aspect_ratio`; errors name OpenAI's params.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, ValidationError
from starlette.datastructures import UploadFile
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
from kinema.api.inputs import as_inputs, fetched, uploaded
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
from kinema.config import Settings
from kinema.contracts.aimlapi import (
    CreateGenerationBody,
    ImageReference,
    Prompt,
    nearest_aspect_ratio,
)
from kinema.contracts.fields import field_errors_from_pydantic
from kinema.domain import ApiKey, GenerationRequest, Job, JobStatus
from kinema.errors import FieldError, ValidationFailed
from kinema.service import InputFile, JobView, Variant

PATH = "/v1/videos"
# OpenAI's documented values and defaults; kinema also takes its 1080p sizes, any other even
# WxH and any whole number of seconds the served model can make (the plan checks those).
OPENAI_SECONDS = ("4", "8", "12")
DEFAULT_SECONDS = "4"
OPENAI_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
DEFAULT_SIZE = "720x1280"
SIZES = (*OPENAI_SIZES, *(f"{w}x{h}" for w, h in FULL_HD_SIZES.values()))
SIZE_PATTERN = re.compile(r"([1-9]\d{0,4})x([1-9]\d{0,4})")
SECONDS_PATTERN = re.compile(r"\d{1,3}")
EXTENSIONS = (
    "negative_prompt",
    "cfg_scale",
    "generate_audio",
    "enhance_prompt",
    "loras",
    "seed",
    "callback_url",
)
PARAM_BY_FIELD = {"duration": "seconds", "aspect_ratio": "size", "image_url": "input_reference"}
MEDIA_TYPES: dict[Variant, str] = {
    "video": "video/mp4",
    "thumbnail": "image/jpeg",
    "spritesheet": "image/jpeg",
}
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


def _size_of(request: GenerationRequest) -> tuple[int, int]:
    if request.width is not None and request.height is not None:
        return request.width, request.height
    return FULL_HD_SIZES[request.aspect_ratio]  # a job stored before sizes were explicit


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
        "seconds": f"{request.duration + job.meta.get('continued_seconds', 0):g}",
        "size": "{}x{}".format(*_size_of(request)),
        "prompt": request.prompt,
        "remixed_from_video_id": job.meta.get("remixed_from"),
        "error": _error(job),
        # kinema's extensions
        "negative_prompt": request.negative_prompt,
        "cfg_scale": request.cfg_scale,
        "generate_audio": request.generate_audio,
        "enhance_prompt": request.enhance_prompt,
        "prompt_used": job.meta.get("prompt_used"),
        "loras": [lora.to_dict() for lora in request.loras],
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
        "input_images": [{"frame": i.frame, "url": i.url} for i in view.input_images],
    }


# The create body


def _invalid(errors: list[FieldError]) -> ValidationFailed:
    """A 400 naming OpenAI's params instead of kinema's /v2 fields."""
    renamed = [FieldError(PARAM_BY_FIELD.get(e.field, e.field), e.message) for e in errors]
    return ValidationFailed(invalid_params_message(renamed), renamed)


def _invalid_param(param: str, message: str) -> ValidationFailed:
    return _invalid([FieldError(param, message)])


def _seconds(seconds: Any) -> int:
    text = str(seconds) if type(seconds) is int else seconds
    if isinstance(text, str) and SECONDS_PATTERN.fullmatch(text.strip()):
        return int(text)
    allowed = ", ".join(f"'{s}'" for s in OPENAI_SECONDS)
    message = f"{seconds!r} is not supported; use one of {allowed} (or whole seconds)"
    raise _invalid_param("seconds", message)


def _size(size: Any) -> tuple[int, int]:
    match = SIZE_PATTERN.fullmatch(size.strip().lower()) if isinstance(size, str) else None
    if match is not None:
        return int(match[1]), int(match[2])
    allowed = ", ".join(f"'{s}'" for s in SIZES)
    raise _invalid_param("size", f"{size!r} is not supported; use one of {allowed} (or WxH)")


def generation_fields(body: dict[str, Any], default_model: str) -> dict[str, Any]:
    """The /v2 body of the fields the two contracts share (unknown keys are ignored)."""
    fields = {name: body[name] for name in ("prompt", *EXTENSIONS) if name in body}
    model = body.get("model")
    fields["model"] = default_model if model is None or model in SORA_ALIASES else model
    return fields


InputReference = ImageReference | bytes | None


def _input_reference(value: Any) -> InputReference:
    """An uploaded file's bytes, or `{"image_url": URL or data URI}` as JSON; None: text only."""
    if value is None or isinstance(value, bytes):
        return value
    url = value.get("image_url") if isinstance(value, dict) else None
    if isinstance(url, str) and url:
        return ImageReference("input_reference", url, 0)
    message = 'must be an image file (multipart) or {"image_url": "https://… or data:image/…"}'
    raise _invalid_param("input_reference", message)


@dataclass(frozen=True)
class VideoBody:
    shared: CreateGenerationBody
    seconds: int
    width: int
    height: int
    input_reference: InputReference = None

    def to_request(self) -> GenerationRequest:
        return replace(
            self.shared.to_request(),
            duration=self.seconds,
            width=self.width,
            height=self.height,
            aspect_ratio=nearest_aspect_ratio(self.width, self.height),
        )


def parse_video_body(body: dict[str, Any], default_model: str) -> VideoBody:
    seconds = _seconds(_or_default(body.get("seconds"), DEFAULT_SECONDS))
    width, height = _size(_or_default(body.get("size"), DEFAULT_SIZE))
    try:
        shared = CreateGenerationBody.model_validate(generation_fields(body, default_model))
    except ValidationError as exc:
        raise _invalid(field_errors_from_pydantic(list(exc.errors()))) from None
    return VideoBody(shared, seconds, width, height, _input_reference(body.get("input_reference")))


def _or_default(value: Any, default: str) -> Any:
    return default if value is None else value


def _form_bool(text: str) -> bool | str:
    return {"true": True, "1": True, "false": False, "0": False}.get(text.strip().lower(), text)


def _form_json(text: str) -> Any:
    """A JSON field of a multipart form (e.g. `loras=[{"name": "…", "scale": 0.8}]`)."""
    try:
        return json.loads(text)
    except ValueError:
        return text  # left for the validator to reject, naming the field


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
    "enhance_prompt": _form_bool,
    "loras": _form_json,
}


def _form_value(name: str, value: Any) -> Any:
    if isinstance(value, UploadFile):
        return value.file.read() if name == "input_reference" else None
    if not isinstance(value, str):
        return value
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
        seconds=OPENAI_SECONDS,
        default_seconds=DEFAULT_SECONDS,
        sizes=SIZES,
        default_size=DEFAULT_SIZE,
        extensions=EXTENSIONS,
        aliases=SORA_ALIASES,
    )


# The routes


def create_video(
    request: Request, key: Key, body: Annotated[dict[str, Any], Depends(create_body)]
) -> dict[str, Any]:
    app = services(request)
    jobs = app.jobs
    parsed = parse_video_body(body, jobs.served.default)
    inputs = _reference_inputs(parsed.input_reference, app.settings)
    try:
        job = jobs.submit(key, parsed.to_request(), parsed.shared.callback_url, inputs)
    except ValidationFailed as exc:  # the model or the callback_url was refused
        raise _invalid(exc.errors or [FieldError(WHOLE_BODY, exc.message)]) from None
    return render_video(jobs.view(job, base_url(request)))


class RemixBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: Prompt
    callback_url: Annotated[StrictStr, Field(max_length=2048)] | None = None


class VideoReference(BaseModel):
    id: StrictStr = Field(min_length=1)


EXTENSION_SECONDS = ("4", "8", "12", "16", "20")


class EditBody(RemixBody):
    video: VideoReference


class ExtensionBody(EditBody):
    seconds: Annotated[int, BeforeValidator(_seconds)] = 4


def _parsed(model: type[RemixBody], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _invalid(field_errors_from_pydantic(list(exc.errors()))) from None


def _submitted(request: Request, submit: Callable[[], Job]) -> dict[str, Any]:
    try:
        job = submit()
    except ValidationFailed as exc:
        raise _invalid(exc.errors or [FieldError(WHOLE_BODY, exc.message)]) from None
    return render_video(services(request).jobs.view(job, base_url(request)))


def remix_video(
    request: Request,
    key: Key,
    video_id: str,
    body: Annotated[dict[str, Any], Depends(json_object_body)],
) -> dict[str, Any]:
    """A new video from a completed one and a new prompt (see JobService.remix)."""
    parsed = _parsed(RemixBody, body)
    jobs = services(request).jobs
    return _submitted(
        request, lambda: jobs.remix(key, video_id, parsed.prompt, parsed.callback_url)
    )


def _video_by_id(body: dict[str, Any]) -> dict[str, Any]:
    """`video` as `{"id": …}` (JSON), or the form field `video[id]` the SDK sends in a multipart
    body; an uploaded video file is refused: kinema continues and edits its own videos."""
    body = {**body}
    if "video[id]" in body:
        body["video"] = {"id": body.pop("video[id]")}
    if isinstance(body.get("video"), bytes):
        message = 'name a completed kinema video as {"id": …}; uploaded videos are not taken'
        raise _invalid_param("video", message)
    return body


def edit_video(
    request: Request, key: Key, body: Annotated[dict[str, Any], Depends(create_body)]
) -> dict[str, Any]:
    """An edit of a completed video by a prompt: kinema's remix (the same frames re-denoised
    toward the new prompt)."""
    parsed = _parsed(EditBody, _video_by_id(body))
    jobs = services(request).jobs
    return _submitted(
        request, lambda: jobs.remix(key, parsed.video.id, parsed.prompt, parsed.callback_url)
    )


def characters_are_not_served(request: Request, key: Key) -> None:
    message = "characters are not supported: the served models take no character references"
    raise _invalid_param(WHOLE_BODY, message)


def extend_video(
    request: Request, key: Key, body: Annotated[dict[str, Any], Depends(create_body)]
) -> dict[str, Any]:
    """A completed video and `seconds` more, continued from its last frames, as one video."""
    parsed = _parsed(ExtensionBody, _video_by_id(body))
    jobs = services(request).jobs
    return _submitted(
        request,
        lambda: jobs.extend(
            key, parsed.video.id, parsed.prompt, parsed.seconds, parsed.callback_url
        ),
    )


def _reference_inputs(reference: InputReference, settings: Settings) -> list[InputFile]:
    """The input reference, fetched or verified, as the first frame's condition."""
    if reference is None:
        return []
    try:
        if isinstance(reference, bytes):
            image = uploaded("input_reference", reference, settings)
            return as_inputs([ImageReference("input_reference", "", 0)], [image])
        return as_inputs([reference], [fetched(reference, settings)])
    except ValidationFailed as refused:
        raise _invalid(refused.errors) from None


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
    f"{PATH}/extensions",
    extend_video,
    methods=["POST"],
    summary="Extend a completed video by 4 to 20 seconds, continued from its last frames",
    responses=openai_responses(VIDEO, 400, 401, 404, 413, 429),
    openapi_extra=AUTHENTICATED,
)
router.add_api_route(
    f"{PATH}/edits",
    edit_video,
    methods=["POST"],
    summary="Edit a completed video by a prompt (kinema runs it as a remix)",
    responses=openai_responses(VIDEO, 400, 401, 404, 413, 429),
    openapi_extra=AUTHENTICATED,
)
router.add_api_route(
    f"{PATH}/characters",
    characters_are_not_served,
    methods=["POST"],
    summary="Not served: the models take no character references (answers 400)",
    responses=openai_responses(VIDEO, 400, 401),
    openapi_extra=AUTHENTICATED,
)
router.add_api_route(
    f"{PATH}/{{video_id}}/remix",
    remix_video,
    methods=["POST"],
    summary="Remix a completed video with a new prompt, keeping its shape, seed and motion",
    responses=openai_responses(VIDEO, 400, 401, 404, 413, 429),
    openapi_extra=AUTHENTICATED,
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
