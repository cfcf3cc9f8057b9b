"""`kinema jobs …` and `kinema cancel`: generations on a server or in the local database."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich import filesize
from rich.markup import escape

from kinema.cli.app import (
    ApiKeyOption,
    AsJson,
    DataDir,
    Output,
    Server,
    StoreUrl,
    app,
    console,
    explained,
    fail,
    print_json,
    stdout_console,
)
from kinema.cli.jobs_display import (
    JobsBackend,
    JobsLocation,
    job_details,
    jobs_table,
    open_jobs,
    status_line,
)
from kinema.errors import KinemaError

jobs_app = typer.Typer(
    help="List, show, download, cancel and delete generations: on a server (--server) or, "
    "without it, in the local data dir's database (every key's jobs).",
    no_args_is_help=True,
)
app.add_typer(jobs_app, name="jobs")


class Order(StrEnum):
    asc = "asc"
    desc = "desc"


Owner = Annotated[
    str | None,
    typer.Option("--owner", help="only this API key's jobs (id or name; local database only)"),
]
JobId = Annotated[str, typer.Argument(help="the generation's id")]
# Ids may begin with "-" (they are URL-safe base64): read an unknown "-x…" as the id, not an option.
TAKES_AN_ID = {"ignore_unknown_options": True}


def _jobs_location(
    server: Server = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDir = None,
    store: StoreUrl = None,
) -> JobsLocation:
    """Where the jobs are: the options every jobs command shares (see `on_jobs_location`)."""
    return JobsLocation(server, api_key, data_dir, store)


def _keyword_parameters(function: Callable[..., object]) -> list[inspect.Parameter]:
    return [
        parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for parameter in inspect.signature(function, eval_str=True).parameters.values()
    ]


_LOCATION_OPTIONS = _keyword_parameters(_jobs_location)
_AS_JSON_OPTION = inspect.Parameter(
    "as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=AsJson
)
_GIVEN_TO_THE_COMMAND = ("where", "as_json")


def on_jobs_location(command: Callable[..., None]) -> Callable[..., None]:
    """`command` as a Typer command with the shared options after its own: --server,
    --api-key, --data-dir and --store, which it receives built into `where: JobsLocation`,
    and --json, which it receives as `as_json: bool`."""
    own = [p for p in _keyword_parameters(command) if p.name not in _GIVEN_TO_THE_COMMAND]

    @functools.wraps(command)
    def run(**options: Any) -> None:
        location = {option.name: options.pop(option.name) for option in _LOCATION_OPTIONS}
        command(**options, where=_jobs_location(**location))

    # Typer reads a command's parameters from inspect.signature, which honours __signature__;
    # typeshed's function type does not declare that attribute, hence vars().
    vars(run)["__signature__"] = inspect.Signature([*own, *_LOCATION_OPTIONS, _AS_JSON_OPTION])
    return run


T = TypeVar("T")


def _on_jobs(where: JobsLocation, act: Callable[[JobsBackend], T]) -> T:
    """`act` on the jobs of a server or of this machine; their errors end the command (exit 1)."""
    try:
        with open_jobs(where) as jobs:
            return act(jobs)
    except (KinemaError, httpx.HTTPError, OSError) as exc:
        raise fail(explained(exc, where.server, where.api_key)) from None


@jobs_app.command("list")
@on_jobs_location
def jobs_list(
    limit: Annotated[int, typer.Option(min=1, max=100, help="jobs per page")] = 20,
    after: Annotated[
        str | None, typer.Option(help="start after this job id (the last of a previous page)")
    ] = None,
    order: Annotated[Order, typer.Option(help="desc: newest first")] = Order.desc,
    owner: Owner = None,
    *,
    where: JobsLocation,
    as_json: bool,
) -> None:
    """List generations, newest first: a table, or with --json {"data", "has_more", "last_id"}."""
    of_owner = dataclasses.replace(where, owner=owner)
    listing = _on_jobs(of_owner, lambda jobs: jobs.list(limit, after, order is Order.desc))
    if as_json:
        print_json(listing.to_json())
        return
    if not listing.jobs:
        console.print("no generations")
        return
    out = stdout_console()
    out.print(jobs_table(listing.jobs, out))
    if listing.has_more:
        console.print(f"more: kinema jobs list --after {listing.jobs[-1].id}")


@jobs_app.command("show", context_settings=TAKES_AN_ID)
@on_jobs_location
def jobs_show(job_id: JobId, *, where: JobsLocation, as_json: bool) -> None:
    """Everything about one generation: status, stage, params, timings, video, error."""
    job = _on_jobs(where, lambda jobs: jobs.show(job_id))
    if as_json:
        print_json(job.to_json())
        return
    stdout_console().print(job_details(job))


@jobs_app.command("cancel", context_settings=TAKES_AN_ID)
@on_jobs_location
def jobs_cancel(job_id: JobId, *, where: JobsLocation, as_json: bool) -> None:
    """Cancel a generation: a queued one ends at once, a running one at its next step."""
    _cancel(job_id, where, as_json)


def _cancel(job_id: str, where: JobsLocation, as_json: bool) -> None:
    job = _on_jobs(where, lambda jobs: jobs.cancel(job_id))
    if as_json:
        print_json(job.to_json())
        return
    console.print(status_line(job))


@jobs_app.command("download", context_settings=TAKES_AN_ID)
@on_jobs_location
def jobs_download(job_id: JobId, output: Output, *, where: JobsLocation, as_json: bool) -> None:
    """Save a completed generation's clip (e.g. one whose `generate` was cut short)."""
    job = _on_jobs(where, lambda jobs: jobs.download(job_id, output))
    size = output.stat().st_size
    if as_json:
        print_json({"id": job.id, "path": str(output.resolve()), "file_size": size})
        return
    path = escape(str(output.resolve()))
    console.print(f"[green]wrote[/green] {path}: {filesize.decimal(size)} ({size} bytes)")


@jobs_app.command("delete", context_settings=TAKES_AN_ID)
@on_jobs_location
def jobs_delete(job_id: JobId, *, where: JobsLocation, as_json: bool) -> None:
    """Delete a generation and its files (a pending one is canceled)."""
    _on_jobs(where, lambda jobs: jobs.delete(job_id))
    if as_json:
        print_json({"id": job_id, "deleted": True})
        return
    console.print(f"{job_id}: deleted")


@app.command("cancel", context_settings=TAKES_AN_ID)
@on_jobs_location
def cancel(
    generation_id: Annotated[str, typer.Argument(help="the generation to cancel")],
    *,
    where: JobsLocation,
    as_json: bool,
) -> None:
    """Cancel a generation (the same as `kinema jobs cancel`)."""
    _cancel(generation_id, where, as_json)
