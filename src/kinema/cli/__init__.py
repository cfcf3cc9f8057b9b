"""The `kinema` command line (Typer)."""

from __future__ import annotations

import errno
import gc
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx
import sqlalchemy.engine.url as sa_url
import typer
from rich import filesize
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from kinema.catalog.registry import (
    KLING_ALIASES,
    MODELS,
    PRESET_ALIASES,
    canonical_id,
    get_spec,
    known_models,
)
from kinema.cli.jobs_view import (
    JobsBackend,
    JobsLocation,
    job_details,
    jobs_table,
    local_time,
    open_jobs,
    status_line,
)
from kinema.client import (
    DEFAULT_MODEL,
    Client,
    DownloadCallback,
    Generation,
    ProgressCallback,
)
from kinema.config import Settings
from kinema.domain import ApiKey
from kinema.errors import (
    ClientError,
    FieldError,
    KinemaError,
    ModelUnavailable,
    NotFound,
    ValidationFailed,
)
from kinema.service import KeyService
from kinema.store.migrations import migrate
from kinema.wiring import jobs_database, make_settings, served_models
from kinema.worker.supervisor import (
    EXIT_MODEL_UNAVAILABLE,
    WorkerSupervisor,
    run_worker,
    stop_on_signals,
    stop_when_orphaned,
)

if TYPE_CHECKING:
    import uvicorn

COMPLETION_HELP = (
    "Shell completion (bash, zsh, fish, PowerShell): run `kinema --install-completion` once and "
    "restart the shell, or `kinema --show-completion` to print the script. "
    "Commands, options and --model ids complete."
)
PIPED_WIDTH = 240
# Idle keep-alive connections stay open this long: longer than the idle timeout of the usual load
# balancers and client pools (60 s), so a client never reuses a connection the server just closed.
KEEP_ALIVE_SECONDS = 75
WEBHOOK_SECRET_HELP = (
    "Webhooks for this key's jobs are signed with it per the Standard Webhooks scheme "
    "(webhook-id, webhook-timestamp and webhook-signature headers; standardwebhooks.com)."
)

app = typer.Typer(
    help="kinema: self-hosted text-to-video with sound.",
    epilog=COMPLETION_HELP,
    no_args_is_help=True,
    add_completion=True,
)
keys_app = typer.Typer(
    help="Manage API keys and their webhook signing secrets.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
jobs_app = typer.Typer(
    help="List, show, download, cancel and delete generations: on a server (--server) or, "
    "without it, in the local data dir's database (every key's jobs).",
    no_args_is_help=True,
)
app.add_typer(jobs_app, name="jobs")

console = Console(stderr=True)


def _complete_model(incomplete: str) -> list[str]:
    """--model completion: every model id kinema knows, its presets and the Kling aliases."""
    known = [*MODELS, *PRESET_ALIASES, *KLING_ALIASES]
    return [model_id for model_id in known if model_id.startswith(incomplete)]


DataDir = Annotated[
    Path | None, typer.Option("--data-dir", envvar="KINEMA_DATA_DIR", help="jobs, keys, artifacts")
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model", help="served model id (env KINEMA_MODEL)", autocompletion=_complete_model
    ),
]


def _server_url(url: str | None) -> str | None:
    """--server must be an http(s) URL (httpx's own complaint about `host:port` names no flag)."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return url
    suggestion = "" if "://" in url else f"; did you mean http://{url} ?"
    raise typer.BadParameter(f"{url!r} is not an http:// or https:// URL{suggestion}")


def _writable_output(path: Path) -> Path:
    """-o is checked before anything is submitted: a clip rendered for a path that cannot be
    written is minutes of work lost at the very end."""
    if path.is_dir():
        example = path / "clip.mp4"
        raise typer.BadParameter(f"{path} is a directory; name the file to write, e.g. {example}")
    folder = path.parent
    if not folder.exists():
        raise typer.BadParameter(f"the folder {folder} does not exist (create it first)")
    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder")
    writable = os.access(path, os.W_OK) if path.exists() else os.access(folder, os.W_OK)
    if not writable:
        raise typer.BadParameter(f"{path} cannot be written here (permission denied)")
    return path


Server = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="KINEMA_SERVER",
        help="server URL, e.g. http://127.0.0.1:8000; without it: this machine",
        callback=_server_url,
    ),
]
Output = Annotated[
    Path, typer.Option("--output", "-o", help="mp4 file to write", callback=_writable_output)
]
ApiKeyOption = Annotated[
    str | None, typer.Option("--api-key", envvar="KINEMA_API_KEY", help="the server's API key")
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON on stdout, for scripts")]
StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store", help="jobs database URL (env KINEMA_STORE_URL; default: SQLite in the data dir)"
    ),
]
StorageUrl = Annotated[
    str | None,
    typer.Option("--storage", help="artifacts: s3://bucket/prefix (env KINEMA_STORAGE)"),
]
db_app = typer.Typer(help="The jobs database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )


def _fail(message: str, then: str | None = None) -> typer.Exit:
    """Print the error (and `then`, what to do next) on stderr; raise the result (exit 1)."""
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    if then:
        console.print(escape(then), highlight=False)
    return typer.Exit(1)


# -- errors in the CLI's terms -----------------------------------------------------------------

# The create body's fields, as `generate` spells them.
CLI_FLAGS = {
    "model": "--model",
    "prompt": "PROMPT",
    "aspect_ratio": "--aspect-ratio",
    "duration": "--duration",
    "negative_prompt": "--negative-prompt",
    "cfg_scale": "--cfg-scale",
    "generate_audio": "--audio/--no-audio",
    "seed": "--seed",
}
# Where the contract's message speaks of the wire (a JSON string "5" is fine there).
CLI_MESSAGES = {"duration": "must be 5 or 10"}
PASS_A_KEY = "pass --api-key KEY or set KINEMA_API_KEY"


def _in_cli_terms(errors: list[FieldError]) -> str:
    return "; ".join(
        f"{CLI_FLAGS.get(e.field, e.field)}: {CLI_MESSAGES.get(e.field, e.message)}" for e in errors
    )


def _explained(exc: Exception, server: str | None = None, api_key: str | None = None) -> str:
    """An error as the person at the command line can act on it: flags and settings, the URL
    that failed, not the wire contract's field names and headers."""
    if isinstance(exc, ValidationFailed) and exc.errors:
        return _in_cli_terms(exc.errors)
    if isinstance(exc, ClientError):
        return _server_refusal(exc, server, api_key)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return (
            f"cannot connect to the server at {server} ({exc}); is `kinema serve` running "
            "there? (the URL comes from --server or KINEMA_SERVER)"
        )
    if isinstance(exc, httpx.HTTPError):
        return f"the connection to {server} failed: {exc or type(exc).__name__}"
    return str(exc)


def _server_refusal(exc: ClientError, server: str | None, api_key: str | None) -> str:
    if exc.status_code == 401:
        if api_key is None:
            return f"the server at {server} needs an API key: {PASS_A_KEY}"
        return (
            f"the server at {server} does not accept this API key (from --api-key or "
            "KINEMA_API_KEY); `kinema keys list` on the server's machine shows its keys"
        )
    errors = _body_field_errors(exc.body)
    if not errors:
        return str(exc)
    served = f"; `kinema models --server {server}` lists them"
    return _in_cli_terms(errors) + (served if any(e.field == "model" for e in errors) else "")


def _body_field_errors(body: object) -> list[FieldError]:
    """The hosted API's envelope names each invalid field: `errors[{field, message}]`."""
    raw = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        return []
    return [
        FieldError(str(error.get("field")), str(error.get("message")))
        for error in raw
        if isinstance(error, dict)
    ]


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

    from kinema.server import create_app

    _configure_logging(log_level)
    settings = make_settings(
        host=host, port=port, model=model, data_dir=data_dir, store_url=store, storage=storage
    )
    # The port first: a server that cannot listen must not create (and print) a key.
    listener = _listening_socket(settings.host, settings.port)
    server: uvicorn.Server | None = None

    def shut_down() -> None:
        if server is not None:
            server.should_exit = True

    supervisor = WorkerSupervisor(
        settings, 0 if no_worker else workers, on_fatal=shut_down, log_level=log_level
    )
    try:
        api = create_app(settings, supervisor)
    except KinemaError as exc:
        listener.close()
        raise _fail(str(exc)) from None
    new_key = _announce_keys(api.state.services.keys, settings.api_keys)
    ready = ReadyNotice(_base_url(settings, listener), settings.model, new_key)
    config = uvicorn.Config(api, log_level=log_level, timeout_keep_alive=KEEP_ALIVE_SECONDS)
    server = _announcing_server(config, ready)
    # What exists now lives as long as the server: a full collection then walks none of it, which
    # otherwise stalls every request (health checks too) for about 0.1 s each time it runs.
    gc.collect()
    gc.freeze()
    try:
        server.run(sockets=[listener])
    finally:
        if new_key is not None and not ready.shown:  # it stopped before it could announce
            console.print(f"created API key {new_key.key.id} (shown only this once): {new_key.raw}")
    if supervisor.fatal:
        console.print("[red]error:[/red] the worker could not load the model (see above)")
        raise typer.Exit(EXIT_MODEL_UNAVAILABLE)


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        hint = "; is another server running there? choose a free one with --port"
        busy = exc.errno == errno.EADDRINUSE
        raise _fail(
            f"cannot listen on {host}:{port}: {exc.strerror}{hint if busy else ''}"
        ) from None
    return listener


def _base_url(settings: Settings, listener: socket.socket) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host, port = listener.getsockname()[:2]
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # every interface: this one too
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    raw: str


@dataclass
class ReadyNotice:
    """What `serve` prints once it answers: where the API and the playground are, and the key
    it created (if it had to)."""

    url: str
    model: str
    new_key: NewKey | None
    shown: bool = False

    def show(self) -> None:
        console.print(self._render())
        self.shown = True

    def _render(self) -> Panel:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_row("API", self.url)
        grid.add_row("playground", f"{self.url}/")
        grid.add_row("model", self.model)
        if self.new_key is None:
            grid.add_row("API keys", "kinema keys list; a new one: kinema keys create --name NAME")
        else:
            grid.add_row("API key", Text(self.new_key.raw, style="bold green"))
            grid.add_row("", "created because none existed; shown only this once")
            grid.add_row("", f"its webhook secret: kinema keys secret {self.new_key.key.id}")
        return Panel(grid, title="kinema is serving", title_align="left", expand=False)


def _announcing_server(config: uvicorn.Config, ready: ReadyNotice) -> uvicorn.Server:
    import uvicorn

    class AnnouncingServer(uvicorn.Server):
        """Prints the ready notice once the app has started and the socket accepts requests."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                ready.show()

    return AnnouncingServer(config)


def _announce_keys(keys: KeyService, seeded: str) -> NewKey | None:
    """Seed the deployment's keys; if none is usable then, create one (to be shown once)."""
    keys.seed(k.strip() for k in seeded.split(","))
    raw_key = keys.ensure_one()
    return None if raw_key is None else NewKey(keys.authenticate(raw_key), raw_key)


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
    from kinema.worker.multi_gpu import run_parallel_worker

    devices = ["cpu"] * cpu_ranks if cpu_ranks > 1 else None
    try:
        return run_parallel_worker(settings, gpus, stop, devices=devices, mode=mode)
    except ValueError as exc:  # e.g. a GPU named twice, or not visible
        raise _fail(str(exc)) from None


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="what the clip shows and sounds like")],
    output: Output,
    model: Annotated[
        str | None, typer.Option(help="model id or alias", autocompletion=_complete_model)
    ] = None,
    aspect_ratio: Annotated[str, typer.Option(help="16:9, 9:16 or 1:1")] = "16:9",
    duration: Annotated[int, typer.Option(help="seconds: 5 or 10")] = 5,
    negative_prompt: Annotated[str | None, typer.Option()] = None,
    cfg_scale: Annotated[float, typer.Option(help="0..1, higher follows the prompt closer")] = 0.5,
    audio: Annotated[bool, typer.Option("--audio/--no-audio", help="generate sound")] = True,
    seed: Annotated[int | None, typer.Option()] = None,
    server: Server = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the clip")] = 3600.0,
    as_json: AsJson = False,
) -> None:
    """Turn a prompt into an mp4, on a server or (without --server) right here.

    Shows the queue position, the stage and step progress, then the download; with --json the
    progress stays on stderr and stdout gets one JSON object (id, status, path, file_size,
    duration, seconds_taken, seed, model)."""
    options = {
        "aspect_ratio": aspect_ratio,
        "duration": duration,
        "negative_prompt": negative_prompt,
        "cfg_scale": cfg_scale,
        "generate_audio": audio,
        "seed": seed,
    }
    _check_request(prompt, model, options, local=server is None)
    where = JobsLocation(server, api_key, data_dir, None)
    start = time.monotonic()
    try:
        with _progress_display() as progress:
            display = GenerationDisplay(progress)
            with _generation_source(where, model, display) as source:
                result = _run_generation(source, prompt, options, output, timeout, display)
    except NotFetched as exc:
        if as_json:
            _print_json(_unfetched_summary(exc.job_id, time.monotonic() - start))
        raise _fail(
            _explained_after_submit(exc, where, timeout),
            _fetch_later_hint(exc.job_id, where, output),
        ) from None
    except (KinemaError, TimeoutError, httpx.HTTPError) as exc:
        raise _fail(_explained(exc, server, api_key)) from None
    summary = _generation_summary(result, output, time.monotonic() - start)
    if as_json:
        _print_json(summary)
    if result.status != "completed" or result.video is None:
        error = result.error or {}
        details = f"job {result.id}: {_command('jobs', 'show', result.id, where=where)}"
        raise _fail(f"{error.get('name')}: {error.get('message')}", details)
    if not as_json:
        console.print(_summary_line(summary))


def _check_request(prompt: str, model: str | None, options: dict[str, Any], local: bool) -> None:
    """Refuse what the server would refuse before anything loads, is submitted or waits: the same
    body model, its errors named by flag. Locally the model must also be one kinema has."""
    from kinema.api.v2 import parse_create_body  # the API's modules load only when used

    try:
        parse_create_body({"model": model or DEFAULT_MODEL, "prompt": prompt, **options})
        if local and model and model not in KLING_ALIASES:
            get_spec(model)
    except ValidationFailed as exc:
        raise _fail(_explained(exc)) from None
    except ModelUnavailable as exc:
        raise _fail(f"--model: {exc}") from None


class NotFetched(Exception):
    """The job was submitted, then following it or saving its clip failed: it lives on (on the
    server, or in the local database), so its id is worth printing."""

    def __init__(self, job_id: str, cause: Exception) -> None:
        super().__init__(str(cause))
        self.job_id = job_id
        self.cause = cause


def _explained_after_submit(exc: NotFetched, where: JobsLocation, timeout: float) -> str:
    cause = exc.cause
    if isinstance(cause, TimeoutError):
        return f"the clip was not done within --timeout {timeout:g} s"
    if isinstance(cause, OSError):
        return f"cannot write the clip: {cause.strerror or cause} ({cause.filename})"
    return _explained(cause, where.server, where.api_key)


def _fetch_later_hint(job_id: str, where: JobsLocation, output: Path) -> str:
    show = _command("jobs", "show", job_id, where=where)
    download = _command("jobs", "download", job_id, "-o", str(output), where=where)
    return f"job {job_id}: see where it stands with `{show}`; save its clip with `{download}`"


def _command(*args: str, where: JobsLocation) -> str:
    """A kinema command line for the same jobs (the API key is left for the reader to add)."""
    located = ["--server", where.server] if where.server else []
    if where.data_dir is not None and not where.server:
        located = ["--data-dir", str(where.data_dir)]
    return " ".join(["kinema", *args, *located])


def _unfetched_summary(job_id: str, seconds: float) -> dict[str, Any]:
    return {
        "id": job_id,
        "status": None,
        "path": None,
        "file_size": None,
        "duration": None,
        "seconds_taken": round(seconds, 3),
        "seed": None,
        "model": None,
    }


def _generation_summary(result: Generation, output: Path, seconds: float) -> dict[str, Any]:
    """What `generate --json` prints: the outcome, the file and how long it all took."""
    done = result.status == "completed" and result.video is not None
    summary: dict[str, Any] = {
        "id": result.id,
        "status": result.status,
        "path": str(output.resolve()) if done else None,
        "file_size": output.stat().st_size if done else None,
        "duration": result.video.duration if result.video else None,
        "seconds_taken": round(seconds, 3),
        "seed": result.meta.get("seed"),
        "model": result.meta.get("model"),
    }
    if result.error:
        summary["error"] = result.error
    return summary


def _summary_line(summary: dict[str, Any]) -> str:
    size = summary["file_size"]
    return (
        f"[green]wrote[/green] {escape(summary['path'])}: {filesize.decimal(size)} ({size} bytes), "
        f"a {summary['duration']:.1f} s clip (seed {summary['seed']}), "
        f"in {summary['seconds_taken']:.1f} s"
    )


class GenerationSource(Protocol):
    def submit(self, prompt: str, options: dict[str, Any]) -> str: ...
    def wait(self, job_id: str, timeout: float, on_progress: ProgressCallback) -> Generation: ...
    def save(self, generation: Generation, output: Path) -> None: ...


class RemoteSource:
    """A kinema (or AI/ML API) server, through `kinema.Client`."""

    def __init__(
        self, client: Client, model: str, on_bytes: DownloadCallback | None = None
    ) -> None:
        self._client = client
        self._model = model
        self._on_bytes = on_bytes

    def submit(self, prompt: str, options: dict[str, Any]) -> str:
        return self._client.create(prompt, model=self._model, **options).id

    def wait(self, job_id: str, timeout: float, on_progress: ProgressCallback) -> Generation:
        return self._client.wait(
            job_id, poll_interval=0.5, timeout=timeout, on_progress=on_progress
        )

    def save(self, generation: Generation, output: Path) -> None:
        self._client.download(generation, output, on_bytes=self._on_bytes)


@contextmanager
def _generation_source(
    where: JobsLocation, model: str | None, display: GenerationDisplay
) -> Iterator[GenerationSource]:
    if where.server:
        with Client(where.server, where.api_key) as client:
            yield RemoteSource(client, model or DEFAULT_MODEL, display.downloaded)
        return
    display.phase("starting (no --server: generating on this machine)")
    from kinema.worker.in_process import EmbeddedRunner

    served = model if model and model not in KLING_ALIASES else None
    settings = make_settings(data_dir=where.data_dir, model=served)
    with EmbeddedRunner(settings, on_phase=display.phase) as runner:
        yield runner


def _run_generation(
    source: GenerationSource,
    prompt: str,
    options: dict[str, Any],
    output: Path,
    timeout: float,
    display: GenerationDisplay,
) -> Generation:
    display.phase("submitting")
    job_id = source.submit(prompt, options)
    try:
        result = source.wait(job_id, timeout=timeout, on_progress=display.show)
        if result.video is not None:
            display.phase(f"{result.status}, saving")
            source.save(result, output)
    except (KinemaError, httpx.HTTPError, OSError) as exc:  # OSError: TimeoutError too
        raise NotFetched(job_id, exc) from exc
    return result


class GenerationDisplay:
    """One generation's progress: queue position, then stage and step %, then the download."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._generation = progress.add_task("starting", total=None)
        self._download: TaskID | None = None

    def phase(self, description: str) -> None:
        """Until the job reports progress (starting, loading, submitting): a pulsing bar, no %."""
        self._progress.update(self._generation, description=description)

    def show(self, generation: Generation) -> None:
        self._progress.update(
            self._generation,
            completed=generation.progress,
            total=100,
            description=_describe(generation),
        )

    def downloaded(self, received: int, size: int | None) -> None:
        if self._download is None:
            self._download = self._progress.add_task("downloading", total=size, unit="bytes")
        self._progress.update(self._download, completed=received, total=size)


class _AmountColumn(ProgressColumn):
    """A generation's step percentage; a download's bytes of its size and the transfer speed."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = DownloadColumn()
        self._speed = TransferSpeedColumn()

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") == "bytes":
            return Text.assemble(self._bytes.render(task), " ", self._speed.render(task))
        if task.total is None:
            return Text("")
        return Text(f"{task.percentage:>5.1f}%")


def _progress_display() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        _AmountColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _describe(generation: Generation) -> str:
    if generation.status == "queued":
        return f"queued (position {generation.queue_position})"
    stage = generation.meta.get("stage")
    return (
        f"{generation.status}: {stage}"
        if stage and stage != generation.status
        else generation.status
    )


@app.command()
def models(
    server: Server = None,
    model: Model = None,
    as_json: AsJson = False,
) -> None:
    """List every model and preset kinema can serve, marking what is served now: by this
    machine's configuration (KINEMA_MODEL or --model), or with --server by that server."""
    try:
        served = _served_model_entries(server, model)
    except (KinemaError, httpx.HTTPError) as exc:
        raise _fail(_explained(exc, server)) from None
    entries = _model_catalog(served)
    if as_json:
        print(json.dumps(entries))
        return
    where = f"by {server}" if server else "here (KINEMA_MODEL or --model)"
    table = Table("id", "served", "serves as", "description", caption=f"served: {where}")
    for entry in entries:
        mark = Text("yes", style="green") if entry["served"] else ""
        table.add_row(entry["id"], mark, entry.get("alias_of", ""), entry.get("description", ""))
    _stdout().print(table)


def _model_catalog(served: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Every model and preset kinema knows, plus whatever else is served (a newer server's
    models, the Kling ids), each marked `served`; served first, the Kling ids last of those."""
    served_ids = {entry["id"] for entry in served}
    others = [entry for entry in known_models() if entry["id"] not in served_ids]
    entries = [
        {**entry, "served": entry["id"] in served_ids or canonical_id(entry["id"]) in served_ids}
        for entry in [*served, *others]
    ]
    return sorted(entries, key=lambda entry: (not entry["served"], entry["id"] in KLING_ALIASES))


def _served_model_entries(server: str | None, model: str | None) -> list[dict[str, str]]:
    if server:
        response = httpx.get(f"{server.rstrip('/')}/v1/models", timeout=10)
        response.raise_for_status()
        return response.json()["data"]  # type: ignore[no-any-return]
    from kinema.catalog.registry import ServedModels

    try:
        return ServedModels.of(served_models(make_settings(model=model))).catalog()
    except ModelUnavailable as exc:
        raise KinemaError(f"--model: {exc}") from None


@contextmanager
def _keys(data_dir: Path | None, store_url: str | None) -> Iterator[KeyService]:
    with jobs_database(make_settings(data_dir=data_dir, store_url=store_url)) as store:
        yield KeyService(store)


def _stdout() -> Console:
    """Tables for people on stdout; piped, they keep whole lines instead of an 80-column cut."""
    plain = Console()
    return plain if plain.is_terminal else Console(width=PIPED_WIDTH)


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


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
        _print_json({**_key_json(key), "key": raw_key, "webhook_secret": key.webhook_secret})
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
        _print_json([_key_json(key) for key in listed])
        return
    table = Table("id", "name", "created", "revoked")
    for key in listed:
        table.add_row(key.id, key.name, local_time(key.created_at), "yes" if key.revoked else "")
    _stdout().print(table)


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
        raise _fail(f"no active key {id_or_name!r}")
    if len(matches) > 1 and not every:
        ids = ", ".join(key.id for key in matches)
        raise _fail(
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
        raise _fail(str(exc)) from None
    if as_json:
        _print_json(
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


# -- jobs: commands ----------------------------------------------------------------------------


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


T = TypeVar("T")


def _on_jobs(where: JobsLocation, act: Callable[[JobsBackend], T]) -> T:
    """`act` on the jobs of a server or of this machine; their errors end the command (exit 1)."""
    try:
        with open_jobs(where) as jobs:
            return act(jobs)
    except (KinemaError, httpx.HTTPError, OSError) as exc:
        raise _fail(_explained(exc, where.server, where.api_key)) from None


@jobs_app.command("list")
def jobs_list(
    limit: Annotated[int, typer.Option(min=1, max=100, help="jobs per page")] = 20,
    after: Annotated[
        str | None, typer.Option(help="start after this job id (the last of a previous page)")
    ] = None,
    order: Annotated[Order, typer.Option(help="desc: newest first")] = Order.desc,
    owner: Owner = None,
    server: Server = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDir = None,
    store: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """List generations, newest first: a table, or with --json {"data", "has_more", "last_id"}."""
    where = JobsLocation(server, api_key, data_dir, store, owner)
    listing = _on_jobs(where, lambda jobs: jobs.list(limit, after, order is Order.desc))
    if as_json:
        _print_json(listing.to_json())
        return
    if not listing.jobs:
        console.print("no generations")
        return
    out = _stdout()
    out.print(jobs_table(listing.jobs, out))
    if listing.has_more:
        console.print(f"more: kinema jobs list --after {listing.jobs[-1].id}")


@jobs_app.command("show", context_settings=TAKES_AN_ID)
def jobs_show(
    job_id: JobId,
    server: Server = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDir = None,
    store: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """Everything about one generation: status, stage, params, timings, video, error."""
    job = _on_jobs(JobsLocation(server, api_key, data_dir, store), lambda jobs: jobs.show(job_id))
    if as_json:
        _print_json(job.to_json())
        return
    _stdout().print(job_details(job))


@jobs_app.command("cancel", context_settings=TAKES_AN_ID)
def jobs_cancel(
    job_id: JobId,
    server: Server = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDir = None,
    store: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """Cancel a generation: a queued one ends at once, a running one at its next step."""
    where = JobsLocation(server, api_key, data_dir, store)
    job = _on_jobs(where, lambda jobs: jobs.cancel(job_id))
    if as_json:
        _print_json(job.to_json())
        return
    console.print(status_line(job))


@jobs_app.command("download", context_settings=TAKES_AN_ID)
def jobs_download(
    job_id: JobId,
    output: Output,
    server: Server = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDir = None,
    store: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """Save a completed generation's clip (e.g. one whose `generate` was cut short)."""
    where = JobsLocation(server, api_key, data_dir, store)
    job = _on_jobs(where, lambda jobs: jobs.download(job_id, output))
    size = output.stat().st_size
    if as_json:
        _print_json({"id": job.id, "path": str(output.resolve()), "file_size": size})
        return
    path = escape(str(output.resolve()))
    console.print(f"[green]wrote[/green] {path}: {filesize.decimal(size)} ({size} bytes)")


@jobs_app.command("delete", context_settings=TAKES_AN_ID)
def jobs_delete(
    job_id: JobId,
    server: Server = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDir = None,
    store: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """Delete a generation and its files (a pending one is canceled)."""
    _on_jobs(JobsLocation(server, api_key, data_dir, store), lambda jobs: jobs.delete(job_id))
    if as_json:
        _print_json({"id": job_id, "deleted": True})
        return
    console.print(f"{job_id}: deleted")


@app.command("cancel", context_settings=TAKES_AN_ID)
def cancel(
    generation_id: Annotated[str, typer.Argument(help="the generation to cancel")],
    server: Server = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDir = None,
    store: StoreUrl = None,
    as_json: AsJson = False,
) -> None:
    """Cancel a generation (the same as `kinema jobs cancel`)."""
    jobs_cancel(generation_id, server, api_key, data_dir, store, as_json)


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None, store: StoreUrl = None) -> None:
    """Create or migrate the jobs database schema to this version of kinema."""
    url = make_settings(data_dir=data_dir, store_url=store).database_url
    migrate(url)
    console.print(f"schema of {_redacted(url)} is current")


def _redacted(url: str) -> str:
    return sa_url.make_url(url).render_as_string(hide_password=True)
