"""PostgreSQL LISTEN/NOTIFY wake-ups for idle workers.

Writers that make work claimable (a new job, a requeued or released one) call `pg_notify(CHANNEL,
model)` inside their transaction, so the notification goes out exactly when the row becomes
visible. Each store that waits keeps one dedicated autocommit psycopg connection LISTENing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

CHANNEL = "kinema_work"
APPLICATION_NAME = "kinema-listener"  # how the LISTEN connection shows in pg_stat_activity
_SLICE_S = 1.0  # longest uninterrupted wait, so close() never waits long

logger = logging.getLogger("kinema.store")


class PgListener:
    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._closing = False

    def wait(
        self, models: Collection[str], deadline: float, is_work_there: Callable[[], bool]
    ) -> None:
        """Return on a notification for one of `models`, or at `deadline` (time.monotonic)."""
        import psycopg  # only PostgreSQL deployments need it

        with self._lock:
            try:
                # Listening starts now: work added before that sent its notification unheard.
                if self._connect() and is_work_there():
                    return
                self._wait(models, deadline)
            except psycopg.Error as exc:
                logger.warning("LISTEN connection lost (%s); reconnecting on the next wait", exc)
                self._disconnect()
                time.sleep(max(0.0, min(deadline - time.monotonic(), _SLICE_S)))

    def close(self) -> None:
        self._closing = True
        with self._lock:
            self._disconnect()

    def _connect(self) -> bool:
        """Open the LISTEN connection if there is none; True when it was (re)opened."""
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return False
        self._conn = psycopg.connect(
            self._conninfo, autocommit=True, application_name=APPLICATION_NAME
        )
        self._conn.execute(f"LISTEN {CHANNEL}")
        return True

    def _wait(self, models: Collection[str], deadline: float) -> None:
        assert self._conn is not None
        while not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for note in self._conn.notifies(timeout=min(remaining, _SLICE_S), stop_after=1):
                if note.payload in models:
                    return

    def _disconnect(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
