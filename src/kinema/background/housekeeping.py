"""Housekeeping: every `housekeeping_seconds`, the jobs past retention and the deleted ones go,
with their files."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kinema.background.loop import BackgroundLoop
from kinema.service import Services

logger = logging.getLogger("kinema.api")

HOUSEKEEPING_STOP_SECONDS = 30.0


def purge_expired(app_services: Services, now: float) -> int:
    """One housekeeping pass at time `now`; how many jobs it removed."""
    removed = app_services.jobs.purge(now)
    if removed:
        logger.info("housekeeping removed %d jobs and their files", removed)
    return removed


def housekeeping(app_services: Services, clock: Callable[[], float] = time.time) -> BackgroundLoop:
    def purge() -> bool:
        purge_expired(app_services, clock())
        return False

    every = app_services.settings.housekeeping_seconds
    return BackgroundLoop("kinema-housekeeping", purge, every, HOUSEKEEPING_STOP_SECONDS)
