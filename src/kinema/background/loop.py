"""A daemon thread that repeats one step until stopped: the shape of every background loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("kinema.background")


class BackgroundLoop:
    """Calls `step` over and over; after a step that found nothing to do (returned False) or
    failed, waits `idle_seconds` first. A failure (a database hiccup) never ends the loop."""

    def __init__(
        self, name: str, step: Callable[[], bool], idle_seconds: float, stop_seconds: float = 30.0
    ) -> None:
        self._name = name
        self._step = step
        self._idle = idle_seconds
        self._stop_seconds = stop_seconds  # how long stop() waits for a step under way
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._stop_seconds)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self._step()
            except Exception:
                logger.exception("%s: step failed", self._name)
                busy = False
            if not busy:
                self._stop.wait(self._idle)
