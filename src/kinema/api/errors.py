"""The hosted API's error envelope, on every response with a status of 400 or more; OpenAI's error
shape instead on the OpenAI-compatible routes (/v1/videos…)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from kinema.contracts.fields import field_errors_from_pydantic, validation_message
from kinema.errors import (
    FieldError,
    Forbidden,
    KinemaError,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    Unauthorized,
    ValidationFailed,
)

logger = logging.getLogger("kinema.api")

STATUS_BY_ERROR: dict[type[KinemaError], int] = {
    ValidationFailed: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    PayloadTooLarge: 413,
    QueueFull: 429,
    ModelUnavailable: 503,
}


def envelope(
    request: Request,
    status_code: int,
    message: str,
    errors: list[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, object] = {
        "requestId": str(uuid.uuid4()),
        "statusCode": status_code,
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "path": request.url.path,
        "message": message,
    }
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    return JSONResponse(body, status_code=status_code, headers=headers)


OPENAI_PATH = "/v1/videos"
# status → (error type, error code) on the OpenAI-compatible routes
OPENAI_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
    503: ("server_error", "service_unavailable"),
}
WHOLE_BODY = "body"  # the field name of errors about the body as a whole (it names no param)


def is_openai_path(path: str) -> bool:
    return path == OPENAI_PATH or path.startswith(f"{OPENAI_PATH}/")


def openai_error(
    status_code: int,
    message: str,
    errors: list[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """`{"error": {"message", "type", "param", "code"}}`, as OpenAI's API answers errors."""
    fallback = ("invalid_request_error", None) if status_code < 500 else ("server_error", None)
    error_type, code = OPENAI_KINDS.get(status_code, fallback)
    param = next((e.field for e in errors or [] if e.field != WHOLE_BODY), None)
    if status_code == 400 and param is not None:
        code = "invalid_value"
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status_code, headers=headers)


def invalid_params_message(errors: list[FieldError]) -> str:
    return "; ".join(
        e.message if e.field == WHOLE_BODY else f"Invalid '{e.field}': {e.message}" for e in errors
    )


def error_response(
    request: Request,
    status_code: int,
    message: str,
    errors: list[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The error body the route's contract uses."""
    if is_openai_path(request.url.path):
        return openai_error(status_code, message, errors, headers)
    return envelope(request, status_code, message, errors, headers)


async def _kinema_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KinemaError)
    status = next((s for cls, s in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 500)
    errors = exc.errors if isinstance(exc, ValidationFailed) else None
    return error_response(request, status, str(exc), errors, _headers_for(exc))


def _headers_for(exc: KinemaError) -> dict[str, str] | None:
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, QueueFull):
        return {"Retry-After": str(exc.retry_after)}
    return None


async def _request_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors_from_pydantic(list(exc.errors()), drop=1)
    if is_openai_path(request.url.path):
        return openai_error(400, invalid_params_message(errors), errors)
    return envelope(request, 400, validation_message(errors), errors)


def _routes(app: FastAPI) -> Iterable[Any]:
    """The app's routes, those of included routers too (FastAPI >= 0.16x keeps those nested)."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    return iterate(app.router.routes) if iterate else app.router.routes


def allowed_methods(request: Request) -> list[str]:
    """Every method the routes at the request's path serve. (The 405 the router raises names
    only those of the first route there: a path with a GET and a POST route allowed just one.)
    A path that is a route of its own (`/v1/videos/extensions`) is not also the template it
    happens to fit (`/v1/videos/{video_id}`)."""
    matching = [
        route
        for route in _routes(request.app)
        if getattr(route, "methods", None) and route.matches(request.scope)[0] is not Match.NONE
    ]
    literal = [route for route in matching if not getattr(route, "param_convertors", None)]
    return sorted({method for route in literal or matching for method in route.methods})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = exc.headers
    if exc.status_code == 405 and (methods := allowed_methods(request)):
        headers = {**(headers or {}), "Allow": ", ".join(methods)}
    return error_response(request, exc.status_code, str(exc.detail), headers=headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return error_response(request, 500, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(KinemaError, _kinema_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
