"""A fresh PostgreSQL database per test run (or per test), dropped afterwards.

The server is KINEMA_TEST_PG_URL (default: postgres on 127.0.0.1:5432, trust auth). When it is
unreachable, creating a database raises: tests that need PostgreSQL fail, they never skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

ADMIN_URL = os.environ.get(
    "KINEMA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _admin() -> psycopg.Connection:
    conninfo = make_url(ADMIN_URL).set(drivername="postgresql")
    return psycopg.connect(
        conninfo.render_as_string(hide_password=False), autocommit=True, connect_timeout=5
    )


def create_database(prefix: str = "kinema_test") -> str:
    """Create an empty database named `<prefix>_<random>`; returns its SQLAlchemy URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    assert name and name.startswith("kinema_"), f"refusing to drop {name!r}"
    with _admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def fresh_database(prefix: str = "kinema_test") -> Iterator[str]:
    url = create_database(prefix)
    try:
        yield url
    finally:
        drop_database(url)
