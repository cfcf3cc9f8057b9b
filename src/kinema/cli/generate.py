"""`kinema generate`: a prompt to an mp4, on a server or on this machine, with its progress."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import httpx
import typer
from rich import filesize
from rich.markup import escape
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
from rich.text import Text

from kinema.catalog.registry import KLING_ALIASES, get_spec
from kinema.cli.app import (
    ApiKeyOption,
    AsJson,
    DataDir,
    Output,
    Server,
    app,
    complete_model,
    console,
    explained,
    fail,
    print_json,
)
from kinema.cli.jobs_view import JobsLocation
from kinema.client import (
    DEFAULT_MODEL,
    Client,
    DownloadCallback,
    Generation,
    ProgressCallback,
    poll_until_done,
)
from kinema.contracts.aimlapi import parse_create_body, render_generation
from kinema.domain import ApiKey
from kinema.errors import KinemaError, ModelUnavailable, NotFound, ValidationFailed
from kinema.wiring import make_settings, served_models

if TYPE_CHECKING:
    from kinema.worker.in_process import InProcessWorker


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="what the clip shows and sounds like")],
    output: Output,
    model: Annotated[
        str | None, typer.Option(help="model id or alias", autocompletion=complete_model)
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
            print_json(_unfetched_summary(exc.job_id, time.monotonic() - start))
        raise fail(
            _explained_after_submit(exc, where, timeout),
            _fetch_later_hint(exc.job_id, where, output),
        ) from None
    except (KinemaError, TimeoutError, httpx.HTTPError) as exc:
        raise fail(explained(exc, server, api_key)) from None
    summary = _generation_summary(result, output, time.monotonic() - start)
    if as_json:
        print_json(summary)
    if result.status != "completed" or result.video is None:
        error = result.error or {}
        details = f"job {result.id}: {_command('jobs', 'show', result.id, where=where)}"
        raise fail(f"{error.get('name')}: {error.get('message')}", details)
    if not as_json:
        console.print(_summary_line(summary))


def _check_request(prompt: str, model: str | None, options: dict[str, Any], local: bool) -> None:
    """Refuse what the server would refuse before anything loads, is submitted or waits: the same
    body model, its errors named by flag. Locally the model must also be one kinema has."""
    try:
        parse_create_body({"model": model or DEFAULT_MODEL, "prompt": prompt, **options})
        if local and model and model not in KLING_ALIASES:
            get_spec(model)
    except ValidationFailed as exc:
        raise fail(explained(exc)) from None
    except ModelUnavailable as exc:
        raise fail(f"--model: {exc}") from None


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
    return explained(cause, where.server, where.api_key)


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


LOCAL_OWNER = ApiKey(id="local", name="local", created_at=0.0)


class LocalSource:
    """A worker thread in this process, through the job service as the API would use it; jobs are
    shown in the v2 contract's terms, as a server's are."""

    def __init__(self, worker: InProcessWorker, model: str) -> None:
        self._worker = worker
        self._jobs = worker.services.jobs
        self._model = model

    def submit(self, prompt: str, options: dict[str, Any]) -> str:
        body = parse_create_body({"model": self._model, "prompt": prompt, **options})
        return self._jobs.submit(LOCAL_OWNER, body.to_request()).id

    def wait(self, job_id: str, timeout: float, on_progress: ProgressCallback) -> Generation:
        return poll_until_done(
            lambda: self._get(job_id), poll_interval=0.2, timeout=timeout, on_progress=on_progress
        )

    def _get(self, job_id: str) -> Generation:
        self._worker.check_alive()
        return Generation.from_json(render_generation(self._jobs.get(LOCAL_OWNER, job_id, "")))

    def save(self, generation: Generation, output: Path) -> None:
        job = self._jobs.owned(LOCAL_OWNER, generation.id)
        if job.artifact is None:
            raise NotFound(f"generation {generation.id} has no video")
        self._worker.services.artifacts.download_to(job.artifact.key, output)


@contextmanager
def _generation_source(
    where: JobsLocation, model: str | None, display: GenerationDisplay
) -> Iterator[GenerationSource]:
    if where.server:
        with Client(where.server, where.api_key) as client:
            yield RemoteSource(client, model or DEFAULT_MODEL, display.downloaded)
        return
    display.phase("starting (no --server: generating on this machine)")
    from kinema.worker.in_process import InProcessWorker

    served = model if model and model not in KLING_ALIASES else None
    settings = make_settings(data_dir=where.data_dir, model=served)
    with InProcessWorker(settings, on_phase=display.phase) as worker:
        yield LocalSource(worker, served_models(settings)[0])


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
