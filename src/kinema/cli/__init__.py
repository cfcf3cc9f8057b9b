"""The `kinema` command line (Typer): `app` with every command group registered on it."""

# Each module registers its commands on import, and `kinema --help` lists them in that order:
# the commands (serve, worker, generate, extend, remix, models, loras, cancel), then the groups
# (keys, jobs, db).
from kinema.cli import serve, worker, generate, extend, models, loras, keys, jobs, db  # noqa: F401  # isort: skip
from kinema.cli.app import app

__all__ = ["app"]
