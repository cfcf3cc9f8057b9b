"""Housekeeping: every `housekeeping_seconds`, the jobs past retention and the deleted ones go,
with their files."""

from __future__ import annotations

import logging
import time

from kinema.background.loop import BackgroundLoop
from kinema.service import Services

logger = logging.getLogger("kinema.api")

HOUSEKEEPING_STOP_SECONDS = 30.0


def housekeeping(app_services: Services) -> BackgroundLoop:
    def purge() -> bool:
        removed = app_services.jobs.purge(time.time())
        if removed:
            logger.info("housekeeping removed %d jobs and their files", removed)
        return False

    every = app_services.settings.housekeeping_seconds
    return BackgroundLoop("kinema-housekeeping", purge, every, HOUSEKEEPING_STOP_SECONDS)
