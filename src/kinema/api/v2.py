"""The AI/ML API v2 video routes, on the current and the legacy vendor path."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from sse_starlette import EventSourceResponse

from kinema.api.deps import base_url, bearer_token, current_key, json_object_body, services
from kinema.api.errors import envelope
from kinema.api.inputs import as_inputs, fetched
from kinema.api.offload import fetching, in_thread
from kinema.api.openapi_docs import (
    AUTHENTICATED,
    GENERATION,
    GENERATION_EVENTS,
    create_generation_openapi,
    v2_responses,
)
from kinema.contracts.aimlapi import parse_create_body, render_generation
from kinema.contracts.fields import renamed
from kinema.domain import ApiKey
from kinema.errors import FieldError, NotFound, Unauthorized, ValidationFailed
from kinema.service import JobView

PATHS = ("/v2/video/generations", "/v2/generate/video/kling/generation")
CREATE_OPENAPI = create_generation_openapi()

router = APIRouter(tags=["video"])
Key = Annotated[ApiKey, Depends(current_key)]


async def create_generation(
    request: Request, key: Key, body: Annotated[dict[str, Any], Depends(json_object_body)]
) -> dict[str, Any]:
    parsed = parse_create_body(body)
    jobs = services(request).jobs
    base = base_url(request)

    settings = services(request).settings
    references = parsed.images()
    images = [await fetching(fetched, reference, settings) for reference in references]

    def submit() -> JobView:
        generation = parsed.to_request([(image.width, image.height) for image in images])
        try:
            job = jobs.submit(key, generation, parsed.callback_url, as_inputs(references, images))
        except ValidationFailed as refused:
            raise renamed(refused, parsed.field_names) from None
        return jobs.view(job, base)

    return render_generation(await in_thread(submit))


def _required_id(generation_id: str | None) -> str:
    if not generation_id:
        raise ValidationFailed(
            "Query validation error: generation_id is required",
            [FieldError("generation_id", "is required")],
        )
    return generation_id


async def get_generation(
    request: Request, key: Key, generation_id: str | None = None
) -> dict[str, Any]:
    jobs = services(request).jobs
    view = await in_thread(jobs.get, key, _required_id(generation_id), base_url(request))
    return render_generation(view)


FINAL_WIRE_STATUSES = ("completed", "error")
PING_SECONDS = 15
# An open stream re-reads its key this often: a revoked key's streams end within about as long.
KEY_RECHECK_SECONDS = 2.0
UNAUTHORIZED_EVENT = "unauthorized"  # its data is the 401 error envelope; the stream then ends
GONE_EVENT = "not_found"  # the job was deleted while followed: the 404 envelope, then the end


async def generation_events(
    request: Request, key: Key, generation_id: str | None = None
) -> EventSourceResponse:
    """Server-Sent Events: `progress` while the job is pending, then one `completed` or `error`
    event carrying the same body as the poll endpoint, then the stream ends."""
    job_id = _required_id(generation_id)
    app = services(request)
    base = base_url(request)
    raw_key = bearer_token(request)
    first = await in_thread(app.jobs.get, key, job_id, base)  # a 404 before streaming
    key_checked_at = time.monotonic()

    def current() -> JobView:
        nonlocal key_checked_at
        if time.monotonic() - key_checked_at >= KEY_RECHECK_SECONDS:
            app.keys.authenticate(raw_key)  # a key revoked meanwhile ends the stream
            key_checked_at = time.monotonic()
        return app.jobs.get(key, job_id, base)

    def ending(exc: Unauthorized | NotFound) -> dict[str, str]:
        status, name = (
            (401, UNAUTHORIZED_EVENT) if isinstance(exc, Unauthorized) else (404, GONE_EVENT)
        )
        return {"event": name, "data": bytes(envelope(request, status, str(exc)).body).decode()}

    events = _generation_events(first, current, app.settings.progress_min_interval, ending)
    return EventSourceResponse(events, ping=PING_SECONDS)


async def _generation_events(
    view: JobView,
    current: Callable[[], JobView],
    interval: float,
    ending: Callable[[Unauthorized | NotFound], dict[str, str]],
) -> AsyncIterator[dict[str, str]]:
    last: dict[str, Any] | None = None
    while True:
        payload = render_generation(view)
        if payload != last:
            final = payload["status"] in FINAL_WIRE_STATUSES
            yield {"event": payload["status"] if final else "progress", "data": json.dumps(payload)}
            if final:
                return
            last = payload
        await asyncio.sleep(interval)
        try:
            view = await in_thread(current)
        except (Unauthorized, NotFound) as exc:  # the key was revoked, or the job deleted
            yield ending(exc)
            return


def cancel_generation(
    request: Request, key: Key, generation_id: str | None = None
) -> dict[str, Any]:
    view = services(request).jobs.cancel(key, _required_id(generation_id), base_url(request))
    return render_generation(view)


router.add_api_route(
    f"{PATHS[0]}/events",
    generation_events,
    methods=["GET"],
    summary="Follow a generation as Server-Sent Events",
    # Documentation only (the route returns its own EventSourceResponse): a class with no media
    # type of its own, so the error bodies are documented as JSON, the events as a stream.
    response_class=Response,
    responses=v2_responses(GENERATION_EVENTS, 400, 401, 404),
    openapi_extra=AUTHENTICATED,
)
router.add_api_route(
    f"{PATHS[0]}/cancel",
    cancel_generation,
    methods=["POST"],
    summary="Cancel a generation (queued: at once; generating: at its next step)",
    responses=v2_responses(GENERATION, 400, 401, 404),
    openapi_extra=AUTHENTICATED,
)
for index, path in enumerate(PATHS):
    legacy = index > 0
    router.add_api_route(
        path,
        create_generation,
        methods=["POST"],
        openapi_extra=CREATE_OPENAPI,
        summary="Start a text-to-video generation",
        include_in_schema=not legacy,
        responses=v2_responses(GENERATION, 400, 401, 413, 429),
    )
    router.add_api_route(
        path,
        get_generation,
        methods=["GET"],
        summary="Poll a generation",
        include_in_schema=not legacy,
        responses=v2_responses(GENERATION, 400, 401, 404),
        openapi_extra=AUTHENTICATED,
    )
