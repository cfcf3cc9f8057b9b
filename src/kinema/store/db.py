"""Engines for the two databases: SQLite (WAL, BEGIN IMMEDIATE for writers) and PostgreSQL
(psycopg 3, READ COMMITTED)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from kinema.private_files import create_private_file

POSTGRES_DRIVER = "postgresql+psycopg"
# A pooled SQLite connection for each thread that may use the store at once (the API's: anyio's
# 40 for its `def` routes, the event loop's executor for its `async def` ones), so that none is
# opened per request: an overflow connection is closed when given back, and opening one costs a
# file open and the PRAGMAs below.
SQLITE_POOL_SIZE = 48
SQLITE_POOL_OVERFLOW = 16
SQLITE_BUSY_SECONDS = 30  # how long a writer waits for another's lock before it gives up
SQLITE_WAL_PAGES_BOUND = 10_000
# A pooled PostgreSQL connection idle this long is pinged before use (a restarted server or a
# firewall's idle timeout leaves it dead); a busy pool's connections are not, as a ping on every
# checkout (SQLAlchemy's pool_pre_ping) cost a quarter of the API's throughput.
POSTGRES_PING_AFTER_IDLE_SECONDS = 5.0


def normalize_url(url: str | URL) -> URL:
    """`postgresql://` and `postgres://` mean psycopg 3 here (psycopg2 is not a dependency)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername=POSTGRES_DRIVER)
    return parsed


def create_engine(url: str | URL) -> Engine:
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        return _postgres_engine(parsed)
    raise ValueError(f"unsupported store URL {parsed!r}: use sqlite:///… or postgresql+psycopg://…")


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def libpq_conninfo(url: URL) -> str:
    """The URL as psycopg.connect() takes it (for the LISTEN connection)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _postgres_engine(url: URL) -> Engine:
    engine = sa.create_engine(url, pool_size=8, max_overflow=16)

    @sa.event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < POSTGRES_PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_connection.execute("SELECT 1")
            dbapi_connection.rollback()
        except Exception as exc:
            # The pool discards this connection and checks out another (a fresh one if need be).
            raise sa.exc.DisconnectionError("idle PostgreSQL connection is gone") from exc

    return engine


def _sqlite_engine(url: URL) -> Engine:
    pool: dict[str, int] = {}
    if url.database and url.database != ":memory:":
        create_private_file(Path(url.database))  # SQLite gives its -wal and -shm this mode too
        pool = {"pool_size": SQLITE_POOL_SIZE, "max_overflow": SQLITE_POOL_OVERFLOW}
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS}, **pool)

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves, so that writers take the lock up front (BEGIN IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        # Rarely a checkpoint inside a commit (it syncs the files: tens of ms, and the writer
        # behind it waits): the store checkpoints after its writes, outside its writers' turn;
        # this bound (pages, 4 KiB each) only stops the WAL growing where a process writes little.
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_PAGES_BOUND}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
