"""Alembic's environment. kinema.store.migrations runs it with no alembic.ini, passing an open
connection in `config.attributes["connection"]` (`kinema db upgrade` goes that way).

For the rare hand-run `alembic` command (e.g. `alembic revision`), point an ini's script_location
here and give the database as `-x url=postgresql+psycopg://…`.
"""

from __future__ import annotations

from alembic import context

from kinema.store.db import create_engine

config = context.config
connection = config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if url is None:
        raise ValueError("no database: give it as `-x url=postgresql+psycopg://…`")
    engine = create_engine(url)
    try:
        with engine.connect() as own:
            context.configure(connection=own, target_metadata=None)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()
