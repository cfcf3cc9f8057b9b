"""The FastAPI application: wiring of settings, store, storage and services."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

from kinema import __version__
from kinema.api import files, openai_videos, ops, playground, v2
from kinema.api.background import BackgroundLoop
from kinema.api.deps import services
from kinema.api.errors import install_error_handlers
from kinema.api.offload import set_thread_calls
from kinema.api.openapi_docs import HEALTH, MODELS, install_openapi
from kinema.api.responses import TolerantJSONResponse
from kinema.api.webhooks import WebhookDeliverer
from kinema.config import Settings
from kinema.runtime import Services, WorkerSupervisor, build_services

logger = logging.getLogger("kinema.api")


async def _health(request: Request) -> dict[str, Any]:
    """From memory, on the event loop: never queued behind the threadpool or the database."""
    return {
        "status": "ok",
        "version": __version__,
        "models": list(services(request).jobs.served.served),
    }


def _models(request: Request) -> dict[str, Any]:
    catalog = services(request).jobs.served.catalog()
    return {
        "object": "list",
        "data": [{**e, "object": "model", "owned_by": "kinema"} for e in catalog],
    }


HOUSEKEEPING_STOP_SECONDS = 30.0


def housekeeping(app_services: Services) -> BackgroundLoop:
    """Removes, every `housekeeping_seconds`, the jobs past retention and the deleted ones."""

    def purge() -> bool:
        removed = app_services.jobs.purge(time.time())
        if removed:
            logger.info("housekeeping removed %d jobs and their files", removed)
        return False

    return BackgroundLoop("kinema-housekeeping", purge, app_services.settings.housekeeping_seconds)


def create_app(
    settings: Settings | None = None, supervisor: WorkerSupervisor | None = None
) -> FastAPI:
    """The ASGI app; `supervisor`'s workers, the webhook deliverer and the housekeeping live
    exactly as long as the app does."""
    settings = settings or Settings()
    app_services = build_services(settings)
    set_thread_calls(settings.api_thread_calls)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        deliverer = WebhookDeliverer(app_services)
        deliverer.start()
        housekeeper = housekeeping(app_services)
        housekeeper.start()
        if supervisor:
            supervisor.start()
        try:
            yield
        finally:
            if supervisor:
                await asyncio.to_thread(supervisor.stop)
            await asyncio.to_thread(deliverer.stop)
            await asyncio.to_thread(housekeeper.stop, HOUSEKEEPING_STOP_SECONDS)
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
