"""The API server process: the HTTP app (kinema.api) with what lives beside it, the background loops
(kinema.background) and, under `kinema serve`, the worker supervisor."""

from __future__ import annotations

from fastapi import FastAPI

from kinema.api.app import Companion, build_app
from kinema.background.housekeeping import housekeeping
from kinema.background.webhook_delivery import WebhookDeliverer
from kinema.config import Settings
from kinema.wiring import build_services
from kinema.worker.supervisor import WorkerSupervisor


def create_app(
    settings: Settings | None = None, supervisor: WorkerSupervisor | None = None
) -> FastAPI:
    """The ASGI app of an API process; `supervisor`'s workers, the webhook deliverer and the
    housekeeping live exactly as long as the app does (the workers stop first)."""
    app_services = build_services(settings or Settings())
    companions: list[Companion] = [WebhookDeliverer(app_services), housekeeping(app_services)]
    if supervisor is not None:
        companions.append(supervisor)
    return build_app(app_services, companions)
