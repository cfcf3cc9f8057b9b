"""Schema migrations (Alembic, configured from code: no alembic.ini needed).

This package is Alembic's script directory too: env.py and versions/ live next to this file.

`migrate(url)` upgrades a database to the newest revision this kinema knows; `schema_status(url)`
says where a database stands. Both work on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection, Engine

from kinema.store.db import create_engine, is_postgres
from kinema.store_protocol import SchemaNotCurrent, SchemaStatus

MIGRATIONS = Path(__file__).parent  # this package is also Alembic's script directory
INITIAL_REVISION = "0001"  # the tables kinema created before it had migrations
# Serializes concurrent `migrate` calls on one PostgreSQL database (any constant works).
_MIGRATION_LOCK = 0x6B696E656D61


class _OnlyUpgrades(logging.Filter):
    """Alembic names its dialect at INFO each time a migration context opens (every process
    start, every schema check): noise in a server's log. The upgrades it runs still show."""

    NOISE = ("Context impl ", "Will assume ")

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.NOISE)


logging.getLogger("alembic.runtime.migration").addFilter(_OnlyUpgrades())


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def migrate(url: str | URL, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` (the newest by default)."""
    engine = create_engine(url)
    try:
        migrate_engine(engine, revision)
    finally:
        engine.dispose()


def schema_status(url: str | URL) -> SchemaStatus:
    """ "current", "missing" (no kinema tables), "behind" (needs `kinema db upgrade`) or "ahead"
    (migrated by a newer kinema than this one)."""
    engine = create_engine(url)
    try:
        return engine_schema_status(engine)
    finally:
        engine.dispose()


def migrate_engine(engine: Engine, revision: str = "head") -> None:
    with engine.connect() as conn:
        conn.execution_options(immediate=True)  # SQLite: BEGIN IMMEDIATE, one migrator at a time
        with conn.begin():
            if is_postgres(engine):
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            status = _status(conn)
            if status == "current":
                return  # nothing to run, and alembic's scripts take longer to load than this took
            if status == "ahead":
                raise _not_current(engine, conn, status)
            config = alembic_config(conn)
            if status == "behind" and not _revisions(conn):
                command.stamp(config, INITIAL_REVISION)  # a database from before migrations
            command.upgrade(config, revision)


def engine_schema_status(engine: Engine) -> SchemaStatus:
    with engine.connect() as conn, conn.begin():
        return _status(conn)


def require_current(engine: Engine) -> None:
    """Raise SchemaNotCurrent unless the schema is exactly the one this kinema needs."""
    with engine.connect() as conn, conn.begin():
        status = _status(conn)
        if status != "current":
            raise _not_current(engine, conn, status)


def _revisions(conn: Connection) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(conn).get_current_heads())


def _status(conn: Connection) -> SchemaStatus:
    current = _revisions(conn)
    if not current:
        return "behind" if sa.inspect(conn).has_table("jobs") else "missing"
    known, heads = _shipped_revisions()
    if not set(current) <= known:
        return "ahead"
    return "current" if set(current) == heads else "behind"


@functools.cache
def _shipped_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """Every revision this kinema ships, and its heads (read from the scripts once)."""
    script = ScriptDirectory.from_config(alembic_config())
    known = frozenset(rev.revision for rev in script.walk_revisions())
    return known, frozenset(script.get_heads())


def _not_current(engine: Engine, conn: Connection, status: SchemaStatus) -> SchemaNotCurrent:
    where = engine.url.render_as_string(hide_password=True)
    found = ", ".join(_revisions(conn)) or "none"
    head = head_revision()
    if status == "ahead":
        message = (
            f"the database schema at {where} (revision {found}) is newer than this kinema "
            f"(which knows up to revision {head}): upgrade kinema on this host; "
            "`kinema db upgrade` cannot downgrade a schema"
        )
    elif status == "missing":
        message = f"the database at {where} has no kinema schema yet: run `kinema db upgrade`"
    else:
        message = (
            f"the database schema at {where} is at revision {found}, this kinema needs "
            f"revision {head}: run `kinema db upgrade`"
        )
    return SchemaNotCurrent(message, status)
