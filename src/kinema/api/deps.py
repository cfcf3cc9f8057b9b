"""Request-scoped dependencies: the app's services, the caller's key, the JSON body."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from fastapi import Request

from kinema.api.json_body import body_error as _body_error
from kinema.api.json_body import check_values, parse_json
from kinema.api.offload import in_thread
from kinema.domain import ApiKey
from kinema.errors import PayloadTooLarge
from kinema.service import Services


def services(request: Request) -> Services:
    return request.app.state.services


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def current_key(request: Request) -> ApiKey:
    """The caller's key: from memory when it was read recently, else read in a worker thread."""
    raw_key = bearer_token(request)
    keys = services(request).keys
    key = keys.cached(raw_key)
    if key is None:
        key = await in_thread(keys.authenticate, raw_key)
    return key


def base_url(request: Request) -> str:
    configured = services(request).settings.public_url
    return configured.rstrip("/") if configured else str(request.base_url).rstrip("/")


async def limited_stream(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The body's chunks, no further than `limit` bytes (chunked uploads declare no length)."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        yield chunk


def body_limit(request: Request) -> int:
    """The body-size limit; a body declared larger is refused before it is read."""
    limit = services(request).settings.create_body_limit
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    return limit


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def json_object_body(request: Request) -> dict[str, Any]:
    limit = body_limit(request)
    if media_type(request) != "application/json":
        raise _body_error("Content-Type must be application/json")
    raw = b"".join([chunk async for chunk in limited_stream(request, limit)])
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise _body_error("the body must be a JSON object")
    check_values(body)
    return body
