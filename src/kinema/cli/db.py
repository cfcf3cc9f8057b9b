"""`kinema db …`: the jobs database."""

from __future__ import annotations

import sqlalchemy.engine.url as sa_url
import typer

from kinema.cli.app import DataDir, StoreUrl, app, console
from kinema.store.migrations import migrate
from kinema.wiring import make_settings

db_app = typer.Typer(help="The jobs database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None, store: StoreUrl = None) -> None:
    """Create or migrate the jobs database schema to this version of kinema."""
    url = make_settings(data_dir=data_dir, store_url=store).database_url
    migrate(url)
    console.print(f"schema of {_redacted(url)} is current")


def _redacted(url: str) -> str:
    return sa_url.make_url(url).render_as_string(hide_password=True)
