"""The hosted API's error envelope, on every response with a status of 400 or more."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kinema.errors import (
    FieldError,
    Forbidden,
    KinemaError,
    ModelUnavailable,
    NotFound,
    NotReady,
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
    NotReady: 503,
    ModelUnavailable: 503,
}


def envelope(
    request: Request,
    status_code: int,
    message: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
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


def field_errors_from_pydantic(
    raw_errors: list[dict[str, object]], drop: int = 0
) -> list[FieldError]:
    result = []
    for error in raw_errors:
        location = [str(part) for part in error.get("loc", ())][drop:]  # type: ignore[union-attr]
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        result.append(FieldError(".".join(location) or "body", message))
    return result


def validation_message(errors: list[FieldError]) -> str:
    details = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return f"Body validation error: {details}"


async def _kinema_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KinemaError)
    status = next((s for cls, s in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 500)
    errors = exc.errors if isinstance(exc, ValidationFailed) else None
    return envelope(request, status, str(exc), errors, _headers_for(exc))


def _headers_for(exc: KinemaError) -> dict[str, str] | None:
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, QueueFull):
        return {"Retry-After": str(exc.retry_after)}
    return None


async def _request_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors_from_pydantic(list(exc.errors()), drop=1)
    return envelope(request, 400, validation_message(errors), errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return envelope(request, exc.status_code, str(exc.detail), headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return envelope(request, 500, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(KinemaError, _kinema_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
