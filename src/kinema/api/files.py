"""Artifact downloads under signed, expiring URLs (HTTP Range via FileResponse)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from kinema.api.deps import services
from kinema.api.openapi_docs import DOWNLOAD, DOWNLOAD_OPENAPI, v2_responses
from kinema.errors import Forbidden, NotFound
from kinema.storage.base import content_type
from kinema.storage.local import FILES_ROUTE, LocalArtifactStore

router = APIRouter(tags=["files"])


Expires = Annotated[str, Query(description="Unix time the link expires at")]
MAX_TIMESTAMP_DIGITS = 20
Signature = Annotated[str, Query(description="The link's signature")]


def _is_timestamp(text: str) -> bool:
    """Digits, and few enough for int() (it refuses thousands of them)."""
    return text.isascii() and text.isdigit() and len(text) <= MAX_TIMESTAMP_DIGITS


def download(
    request: Request, key: str, expires: Expires = "", signature: Signature = ""
) -> FileResponse:
    if not _is_timestamp(expires) or not signature.isascii():
        raise Forbidden("a signed download link is required")
    artifacts = services(request).artifacts
    if not isinstance(artifacts, LocalArtifactStore):
        raise NotFound("downloads are served by the artifact store's own (presigned) URLs")
    path = artifacts.verify(key, int(expires), signature)
    return FileResponse(path, media_type=content_type(key), filename=path.name)


router.add_api_route(
    f"{FILES_ROUTE}/{{key:path}}",
    download,
    methods=["GET"],
    summary="Download an artifact through its signed link",
    response_class=FileResponse,  # documentation only: the route returns its own FileResponse
    responses=v2_responses(DOWNLOAD, 403, 404),
    openapi_extra=DOWNLOAD_OPENAPI,
)
router.add_api_route(
    f"{FILES_ROUTE}/{{key:path}}", download, methods=["HEAD"], include_in_schema=False
)
