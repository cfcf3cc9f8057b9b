"""Artifact downloads under signed, expiring URLs (HTTP Range via FileResponse)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from kinema.api.deps import services
from kinema.errors import Forbidden, NotFound
from kinema.storage.base import content_type
from kinema.storage.local import FILES_ROUTE, LocalArtifactStore

router = APIRouter(tags=["files"])


def download(request: Request, key: str, expires: str = "", signature: str = "") -> FileResponse:
    if not (expires.isascii() and expires.isdigit()) or not signature.isascii():
        raise Forbidden("a signed download link is required")
    artifacts = services(request).artifacts
    if not isinstance(artifacts, LocalArtifactStore):
        raise NotFound("downloads are served by the artifact store's own (presigned) URLs")
    path = artifacts.verify(key, int(expires), signature)
    return FileResponse(path, media_type=content_type(key), filename=path.name)


router.add_api_route(f"{FILES_ROUTE}/{{key:path}}", download, methods=["GET"])
router.add_api_route(
    f"{FILES_ROUTE}/{{key:path}}", download, methods=["HEAD"], include_in_schema=False
)
