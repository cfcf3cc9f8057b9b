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
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kinema.client import DEFAULT_MODEL, Client, Generation, ProgressCallback
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
from kinema.store.sql import open_store

app = typer.Typer(help="kinema: self-hosted text-to-video with sound.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

console = Console(stderr=True)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", envvar="KINEMA_DATA_DIR", help="jobs, keys, artifacts")
]
Model = Annotated[str | None, typer.Option("--model", help="served model id [env KINEMA_MODEL]")]


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
    workers: Annotated[int, typer.Option(help="worker processes to run beside the API")] = 1,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="run the API only")] = False,
    log_level: str = "info",
) -> None:
    """Run the HTTP API and its worker process(es)."""
    import uvicorn

    from kinema.api.app import create_app

    _configure_logging(log_level)
    settings = make_settings(host=host, port=port, model=model, data_dir=data_dir)
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
    log_level: str = "info",
    exit_with_parent: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Run one worker: load the model once, then process jobs from the data directory's queue."""
    _configure_logging(log_level)
    stop = threading.Event()
    stop_on_signals(stop)
    if exit_with_parent:
        stop_when_orphaned(stop)
    raise typer.Exit(run_worker(make_settings(model=model, data_dir=data_dir), stop))


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
def _keys(data_dir: Path | None) -> Iterator[KeyService]:
    store = open_store(make_settings(data_dir=data_dir).database_path)
    try:
        yield KeyService(store)
    finally:
        store.close()


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="a label for the key")], data_dir: DataDir = None
) -> None:
    """Create an API key and print it (the only time it is shown)."""
    with _keys(data_dir) as keys:
        key, raw_key = keys.create(name)
    console.print(f"created key {key.id} ({key.name}); it is shown only once:")
    print(raw_key)


@keys_app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    """List API keys (ids and names; the keys themselves are stored only as hashes)."""
    table = Table("id", "name", "created", "revoked")
    with _keys(data_dir) as keys:
        listed = keys.list()
    for key in listed:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(key.created_at))
        table.add_row(key.id, key.name, created, "yes" if key.revoked else "")
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="key id or name")], data_dir: DataDir = None
) -> None:
    """Revoke an API key by id or name."""
    with _keys(data_dir) as keys:
        revoked = keys.revoke(key)
    if revoked == 0:
        raise _fail(f"no active key {key!r}")
    console.print(f"revoked {key}")
