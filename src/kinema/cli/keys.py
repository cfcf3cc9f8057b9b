"""`kinema keys …`: API keys and their webhook signing secrets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from kinema.cli.app import AsJson, DataDir, StoreUrl, app, console, fail, print_json, stdout_console
from kinema.cli.jobs_display import local_time
from kinema.domain import ApiKey
from kinema.errors import KinemaError, NotFound
from kinema.service import KeyService
from kinema.wiring import jobs_database, make_settings

WEBHOOK_SECRET_HELP = (
    "Webhooks for this key's jobs are signed with it per the Standard Webhooks scheme "
    "(webhook-id, webhook-timestamp and webhook-signature headers; standardwebhooks.com)."
)


keys_app = typer.Typer(
    help="Manage API keys and their webhook signing secrets.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")


@contextmanager
def _keys(data_dir: Path | None, store_url: str | None) -> Iterator[KeyService]:
    with jobs_database(make_settings(data_dir=data_dir, store_url=store_url)) as store:
        yield KeyService(store)


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "created_at": key.created_at, "revoked": key.revoked}


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="a label for the key")],
    data_dir: DataDir = None,
    store: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """Create an API key and print it (the only time it is shown), with its webhook secret."""
    with _keys(data_dir, store) as keys:
        key, raw_key = keys.create(name)
    if as_json:
        print_json({**_key_json(key), "key": raw_key, "webhook_secret": key.webhook_secret})
        return
    console.print(f"created key {key.id} ({key.name}); it is shown only once:")
    print(raw_key)
    console.print(f"webhook signing secret: {key.webhook_secret}")
    console.print(f"{WEBHOOK_SECRET_HELP} `kinema keys secret {key.id}` shows it again.")


@keys_app.command("list")
def keys_list(data_dir: DataDir = None, store: StoreUrl = None, as_json: AsJson = False) -> None:
    """List API keys (ids and names; the keys themselves are stored only as hashes)."""
    with _keys(data_dir, store) as keys:
        listed = keys.list()
    if as_json:
        print_json([_key_json(key) for key in listed])
        return
    table = Table("id", "name", "created", "revoked")
    for key in listed:
        table.add_row(key.id, key.name, local_time(key.created_at), "yes" if key.revoked else "")
    stdout_console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="key id or name")],
    every: Annotated[
        bool, typer.Option("--all", help="revoke every active key of that name (names repeat)")
    ] = False,
    data_dir: DataDir = None,
    store: StoreUrl = None,
) -> None:
    """Revoke an API key by id, or by name when one active key has it (--all: every one)."""
    with _keys(data_dir, store) as keys:
        active = [listed for listed in keys.list() if not listed.revoked]
        targets = _keys_to_revoke(active, key, every)
        for target in targets:
            keys.revoke(target.id)
    for target in targets:
        console.print(f"revoked key {target.id} ({target.name})", highlight=False)


def _keys_to_revoke(active: list[ApiKey], id_or_name: str, every: bool) -> list[ApiKey]:
    by_id = [key for key in active if key.id == id_or_name]
    matches = by_id or [key for key in active if key.name == id_or_name]
    if not matches:
        raise fail(f"no active key {id_or_name!r}")
    if len(matches) > 1 and not every:
        ids = ", ".join(key.id for key in matches)
        raise fail(
            f"{len(matches)} active keys are named {id_or_name!r} ({ids}); revoke one by its id, "
            f"or all of them with `kinema keys revoke {id_or_name} --all`"
        )
    return matches


@keys_app.command("secret")
def keys_secret(
    key: Annotated[str, typer.Argument(help="key id or name")],
    rotate: Annotated[
        bool, typer.Option("--rotate", help="replace the secret (the old one stops working)")
    ] = False,
    data_dir: DataDir = None,
    store: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """Print a key's webhook signing secret (--rotate: make a new one first)."""
    try:
        with _keys(data_dir, store) as keys:
            found = _find_key(keys.list(), key)
            secret = (
                keys.rotate_webhook_secret(found.id) if rotate else keys.webhook_secret(found.id)
            )
    except KinemaError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print_json(
            {"id": found.id, "name": found.name, "webhook_secret": secret, "rotated": rotate}
        )
        return
    revoked = " [yellow](revoked)[/yellow]" if found.revoked else ""
    what = "new webhook signing secret" if rotate else "webhook signing secret"
    console.print(f"{what} of key {found.id} ({found.name}){revoked}:")
    print(secret)
    console.print(WEBHOOK_SECRET_HELP)


def _find_key(listed: list[ApiKey], id_or_name: str) -> ApiKey:
    """The key with this id, else the one key with this name."""
    by_id = [key for key in listed if key.id == id_or_name]
    matches = by_id or [key for key in listed if key.name == id_or_name]
    if not matches:
        raise NotFound(f"no key {id_or_name!r}")
    if len(matches) > 1:
        ids = ", ".join(key.id for key in matches)
        raise KinemaError(f"several keys are named {id_or_name!r}; name one by id: {ids}")
    return matches[0]
