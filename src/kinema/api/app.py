"""The FastAPI application over the services: routes, errors, the OpenAPI document. HTTP only:
what runs beside it is handed in (see kinema.server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import FastAPI, Request

from kinema import __version__
from kinema.api import files, openai_videos, ops, playground, v2
from kinema.api.deps import services
from kinema.api.errors import install_error_handlers
from kinema.api.offload import set_thread_calls
from kinema.api.openapi_docs import HEALTH, MODELS, install_openapi
from kinema.api.responses import TolerantJSONResponse
from kinema.service import Services


async def _health(request: Request) -> dict[str, Any]:
    """From memory, on the event loop: never queued behind the threadpool or the database."""
    return {
        "status": "ok",
        "version": __version__,
        "models": list(services(request).jobs.served.served),
    }


def _models(request: Request) -> dict[str, Any]:
    app = services(request)
    catalog = app.jobs.served_catalog(app.settings.worker_liveness_seconds)
    return {
        "object": "list",
        "data": [{**e, "object": "model", "owned_by": "kinema"} for e in catalog],
    }


class Companion(Protocol):
    """What lives exactly as long as the app: a background loop, the worker supervisor."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def build_app(app_services: Services, companions: Sequence[Companion] = ()) -> FastAPI:
    """The ASGI app over `app_services`: it starts `companions` (in order) before it serves and
    stops them (in reverse) and closes the services after."""
    set_thread_calls(app_services.settings.api_thread_calls)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        started: list[Companion] = []
        try:
            for companion in companions:
                companion.start()
                started.append(companion)
            yield
        finally:
            for companion in reversed(started):
                await asyncio.to_thread(companion.stop)
            app_services.close()

    app = FastAPI(
        title="kinema",
        version=__version__,
        lifespan=lifespan,
        default_response_class=TolerantJSONResponse,
    )
    app.state.services = app_services
    install_error_handlers(app)
    app.include_router(v2.router)
    app.include_router(openai_videos.router)
    app.include_router(files.router)
    app.include_router(ops.router)
    app.include_router(playground.router)
    app.add_api_route("/healthz", _health, methods=["GET"], tags=["ops"], responses=HEALTH)
    app.add_api_route("/v1/models", _models, methods=["GET"], tags=["models"], responses=MODELS)
    install_openapi(app, app_services.jobs.served)
    return app
