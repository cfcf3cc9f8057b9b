"""The `kinema` command line (Typer)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Protocol

import httpx
import sqlalchemy.engine.url as sa_url
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kinema.client import DEFAULT_MODEL, Client, Generation, ProgressCallback
from kinema.config import Settings
from kinema.engine.registry import KLING_ALIASES
from kinema.errors import ClientError, KinemaError
from kinema.runtime import (
    EXIT_MODEL_UNAVAILABLE,
    WorkerSupervisor,
    make_settings,
    run_worker,
    served_models,
    stop_on_signals,
    stop_when_orphaned,
)
from kinema.service import KeyService
from kinema.store.migrations import migrate
from kinema.store.sql import SqlJobStore, open_store_url

app = typer.Typer(help="kinema: self-hosted text-to-video with sound.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

console = Console(stderr=True)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", envvar="KINEMA_DATA_DIR", help="jobs, keys, artifacts")
]
Model = Annotated[str | None, typer.Option("--model", help="served model id [env KINEMA_MODEL]")]
StoreUrl = Annotated[
    str | None,
    typer.Option("--store", help="jobs database URL [env KINEMA_STORE_URL; default SQLite]"),
]
StorageUrl = Annotated[
    str | None,
    typer.Option("--storage", help="artifacts: s3://bucket/prefix [env KINEMA_STORAGE]"),
]
db_app = typer.Typer(help="The jobs database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind")] = None,
    port: Annotated[int | None, typer.Option(help="port to bind")] = None,
    model: Model = None,
    data_dir: DataDir = None,
    store: StoreUrl = None,
    storage: StorageUrl = None,
    workers: Annotated[int, typer.Option(help="worker processes to run beside the API")] = 1,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="run the API only")] = False,
    log_level: str = "info",
) -> None:
    """Run the HTTP API and its worker process(es)."""
    import uvicorn

    from kinema.api.app import create_app

    _configure_logging(log_level)
    settings = make_settings(
        host=host, port=port, model=model, data_dir=data_dir, store_url=store, storage=storage
    )
    server: uvicorn.Server | None = None

    def shut_down() -> None:
        if server is not None:
            server.should_exit = True

    supervisor = WorkerSupervisor(settings, 0 if no_worker else workers, on_fatal=shut_down)
    try:
        api = create_app(settings, supervisor)
    except KinemaError as exc:
        raise _fail(str(exc)) from None
    _announce_keys(api.state.services.keys, settings.api_keys)
    config = uvicorn.Config(api, host=settings.host, port=settings.port, log_level=log_level)
    server = uvicorn.Server(config)
    server.run()
    if supervisor.fatal:
        console.print("[red]error:[/red] the worker could not load the model (see above)")
        raise typer.Exit(EXIT_MODEL_UNAVAILABLE)


def _announce_keys(keys: KeyService, seeded: str) -> None:
    keys.seed(k.strip() for k in seeded.split(","))
    new_key = keys.ensure_one()
    if new_key:
        console.print(f"[bold]No API key existed; created one (shown once):[/bold] {new_key}")


@app.command()
def worker(
    model: Model = None,
    data_dir: DataDir = None,
    store: StoreUrl = None,
    storage: StorageUrl = None,
    gpus: Annotated[
        str | None, typer.Option(help="one clip across these GPUs (context parallel), e.g. 0,1")
    ] = None,
    context_parallel: Annotated[str, typer.Option(help="ulysses | ring (CUDA only)")] = "ulysses",
    cpu_ranks: Annotated[int, typer.Option(hidden=True)] = 0,  # tests: N gloo ranks on a CPU
    log_level: str = "info",
    exit_with_parent: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Run one worker: load the model once, then process jobs from the shared queue."""
    _configure_logging(log_level)
    stop = threading.Event()
    stop_on_signals(stop)
    if exit_with_parent:
        stop_when_orphaned(stop)
    settings = make_settings(model=model, data_dir=data_dir, store_url=store, storage=storage)
    try:
        ids = [int(g) for g in gpus.split(",") if g.strip()] if gpus else None
    except ValueError:
        raise _fail(f"--gpus takes GPU numbers like 0,1,2,3, not {gpus!r}") from None
    if ids and len(ids) == 1:
        settings = settings.model_copy(update={"device": f"cuda:{ids[0]}"})
    if (ids and len(ids) > 1) or cpu_ranks > 1:
        raise typer.Exit(_run_ranks(settings, ids, cpu_ranks, context_parallel, stop))
    raise typer.Exit(run_worker(settings, stop))


def _run_ranks(
    settings: Settings, gpus: list[int] | None, cpu_ranks: int, mode: str, stop: threading.Event
) -> int:
    from kinema.parallel_worker import run_parallel_worker

    devices = ["cpu"] * cpu_ranks if cpu_ranks > 1 else None
    try:
        return run_parallel_worker(settings, gpus, stop, devices=devices, mode=mode)
    except ValueError as exc:  # e.g. a GPU named twice, or not visible
        raise _fail(str(exc)) from None


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="what the clip shows and sounds like")],
    output: Annotated[Path, typer.Option("--output", "-o", help="mp4 file to write")],
    model: Annotated[str | None, typer.Option(help="model id or alias")] = None,
    aspect_ratio: Annotated[str, typer.Option(help="16:9, 9:16 or 1:1")] = "16:9",
    duration: Annotated[int, typer.Option(help="seconds: 5 or 10")] = 5,
    negative_prompt: Annotated[str | None, typer.Option()] = None,
    cfg_scale: Annotated[float, typer.Option(help="0..1, higher follows the prompt closer")] = 0.5,
    audio: Annotated[bool, typer.Option("--audio/--no-audio", help="generate sound")] = True,
    seed: Annotated[int | None, typer.Option()] = None,
    server: Annotated[str | None, typer.Option(envvar="KINEMA_SERVER", help="server URL")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="KINEMA_API_KEY")] = None,
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the clip")] = 3600.0,
) -> None:
    """Turn a prompt into an mp4, on a server or (without --server) right here."""
    options = {
        "aspect_ratio": aspect_ratio,
        "duration": duration,
        "negative_prompt": negative_prompt,
        "cfg_scale": cfg_scale,
        "generate_audio": audio,
        "seed": seed,
    }
    start = time.monotonic()
    try:
        with _generation_source(server, api_key, data_dir, model) as source:
            result = _run_generation(source, prompt, options, output, timeout)
    except (ClientError, KinemaError, TimeoutError, httpx.HTTPError) as exc:
        raise _fail(str(exc)) from None
    if result.status != "completed" or result.video is None:
        error = result.error or {}
        raise _fail(f"{error.get('name')}: {error.get('message')}")
    console.print(
        f"[green]wrote[/green] {output} ({output.stat().st_size} bytes, "
        f"{result.video.duration} s) in {time.monotonic() - start:.1f} s"
    )


class GenerationSource(Protocol):
    def submit(self, prompt: str, options: dict[str, Any]) -> str: ...
    def wait(self, job_id: str, timeout: float, on_progress: ProgressCallback) -> Generation: ...
    def save(self, generation: Generation, output: Path) -> None: ...


class RemoteSource:
    """A kinema (or AI/ML API) server, through `kinema.Client`."""

    def __init__(self, client: Client, model: str) -> None:
        self._client = client
        self._model = model

    def submit(self, prompt: str, options: dict[str, Any]) -> str:
        return self._client.create(prompt, model=self._model, **options).id

    def wait(self, job_id: str, timeout: float, on_progress: ProgressCallback) -> Generation:
        return self._client.wait(
            job_id, poll_interval=0.5, timeout=timeout, on_progress=on_progress
        )

    def save(self, generation: Generation, output: Path) -> None:
        self._client.download(generation, output)


@contextmanager
def _generation_source(
    server: str | None, api_key: str | None, data_dir: Path | None, model: str | None
) -> Iterator[GenerationSource]:
    if server:
        with Client(server, api_key) as client:
            yield RemoteSource(client, model or DEFAULT_MODEL)
        return
    from kinema.embedded import EmbeddedRunner

    served = model if model and model not in KLING_ALIASES else None
    with EmbeddedRunner(make_settings(data_dir=data_dir, model=served)) as runner:
        yield runner


def _run_generation(
    source: GenerationSource, prompt: str, options: dict[str, Any], output: Path, timeout: float
) -> Generation:
    with _progress_display() as progress:
        task = progress.add_task("submitting", total=100)

        def show(generation: Generation) -> None:
            progress.update(task, completed=generation.progress, description=_describe(generation))

        job_id = source.submit(prompt, options)
        result = source.wait(job_id, timeout=timeout, on_progress=show)
        if result.video is not None:
            source.save(result, output)
    return result


def _progress_display() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        console=console,
    )


def _describe(generation: Generation) -> str:
    if generation.status == "queued":
        return f"queued (position {generation.queue_position})"
    stage = generation.meta.get("stage") or generation.status
    return f"{generation.status}: {stage}"


@app.command()
def models(
    server: Annotated[str | None, typer.Option(envvar="KINEMA_SERVER", help="server URL")] = None,
    model: Model = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """List the models served (by a server, or by this machine's configuration)."""
    try:
        entries = _served_model_entries(server, model)
    except httpx.HTTPError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        print(json.dumps(entries))
        return
    table = Table("id", "serves as", "description")
    for entry in entries:
        table.add_row(entry["id"], entry.get("alias_of", ""), entry.get("description", ""))
    Console().print(table)


def _served_model_entries(server: str | None, model: str | None) -> list[dict[str, str]]:
    if server:
        response = httpx.get(f"{server.rstrip('/')}/v1/models", timeout=10)
        response.raise_for_status()
        return response.json()["data"]  # type: ignore[no-any-return]
    from kinema.engine.registry import ServedModels

    return ServedModels.of(served_models(make_settings(model=model))).catalog()


@contextmanager
def _local_store(data_dir: Path | None, store_url: str | None) -> Iterator[SqlJobStore]:
    store = open_store_url(make_settings(data_dir=data_dir, store_url=store_url).database_url)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _keys(data_dir: Path | None, store_url: str | None) -> Iterator[KeyService]:
    with _local_store(data_dir, store_url) as store:
        yield KeyService(store)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="a label for the key")],
    data_dir: DataDir = None,
    store: StoreUrl = None,
) -> None:
    """Create an API key and print it (the only time it is shown)."""
    with _keys(data_dir, store) as keys:
        key, raw_key = keys.create(name)
    console.print(f"created key {key.id} ({key.name}); it is shown only once:")
    print(raw_key)


@keys_app.command("list")
def keys_list(data_dir: DataDir = None, store: StoreUrl = None) -> None:
    """List API keys (ids and names; the keys themselves are stored only as hashes)."""
    table = Table("id", "name", "created", "revoked")
    with _keys(data_dir, store) as keys:
        listed = keys.list()
    for key in listed:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(key.created_at))
        table.add_row(key.id, key.name, created, "yes" if key.revoked else "")
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="key id or name")],
    data_dir: DataDir = None,
    store: StoreUrl = None,
) -> None:
    """Revoke an API key by id or name."""
    with _keys(data_dir, store) as keys:
        revoked = keys.revoke(key)
    if revoked == 0:
        raise _fail(f"no active key {key!r}")
    console.print(f"revoked {key}")


@app.command()
def cancel(
    generation_id: Annotated[str, typer.Argument(help="the generation to cancel")],
    server: Annotated[str | None, typer.Option(envvar="KINEMA_SERVER", help="server URL")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="KINEMA_API_KEY")] = None,
    data_dir: DataDir = None,
    store: StoreUrl = None,
) -> None:
    """Cancel a generation: on a server with a key, or (without --server) in the local store."""
    try:
        status = _cancel(generation_id, server, api_key, data_dir, store)
    except (ClientError, KinemaError, httpx.HTTPError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"{generation_id}: {status}")


def _cancel(
    generation_id: str,
    server: str | None,
    api_key: str | None,
    data_dir: Path | None,
    store_url: str | None,
) -> str:
    if server:
        with Client(server, api_key) as client:
            return client.cancel(generation_id).status
    with _local_store(data_dir, store_url) as store:
        job = store.request_cancel(generation_id)
    if job is None:
        raise KinemaError(f"generation {generation_id!r} not found")
    return f"{job.status.value}{' (stops at its next step)' if job.cancel_requested else ''}"


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None, store: StoreUrl = None) -> None:
    """Create or migrate the jobs database schema to this version of kinema."""
    url = make_settings(data_dir=data_dir, store_url=store).database_url
    migrate(url)
    console.print(f"schema of {_redacted(url)} is current")


def _redacted(url: str) -> str:
    return sa_url.make_url(url).render_as_string(hide_password=True)
