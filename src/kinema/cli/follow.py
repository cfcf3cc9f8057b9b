"""What the commands that make a clip share (`generate`, `extend`, `remix`): submit one job, show
its queue position, stage and step progress, then the download, and end with the file's line
(or one JSON object), or with the job's id and how to fetch its clip later."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
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

from kinema.cli.app import console, explained, fail, print_json
from kinema.cli.jobs_display import JobsLocation
from kinema.client import Generation, ProgressCallback
from kinema.errors import KinemaError


class Follower(Protocol):
    """Where a submitted job is followed to its end and its clip saved."""

    def wait(self, job_id: str, timeout: float, on_progress: ProgressCallback) -> Generation: ...
    def save(self, generation: Generation, output: Path) -> None: ...


SourceT = TypeVar("SourceT", bound=Follower)


class NotFetched(Exception):
    """The job was submitted, then following it or saving its clip failed: it lives on (on the
    server, or in the local database), so its id is worth printing."""

    def __init__(self, job_id: str, cause: Exception) -> None:
        super().__init__(str(cause))
        self.job_id = job_id
        self.cause = cause


def make_clip(
    where: JobsLocation,
    open_source: Callable[[GenerationDisplay], AbstractContextManager[SourceT]],
    submit: Callable[[SourceT], str],
    output: Path,
    timeout: float,
    as_json: bool,
) -> None:
    """Open the source (a server's client, or a worker here), submit with it, follow the job and
    save its clip to `output`; report the outcome, or fail (exit 1) saying what went wrong."""
    start = time.monotonic()
    try:
        with progress_display() as progress:
            display = GenerationDisplay(progress)
            with open_source(display) as source:
                result = follow(source, lambda: submit(source), output, timeout, display)
    except NotFetched as exc:
        if as_json:
            print_json(_unfetched_summary(exc.job_id, time.monotonic() - start))
        raise fail(
            _explained_after_submit(exc, where, timeout),
            _fetch_later_hint(exc.job_id, where, output),
        ) from None
    except (KinemaError, TimeoutError, httpx.HTTPError) as exc:
        raise fail(explained(exc, where.server, where.api_key)) from None
    summary = _generation_summary(result, output, time.monotonic() - start)
    if as_json:
        print_json(summary)
    if result.status != "completed" or result.video is None:
        error = result.error or {}
        details = f"job {result.id}: {command('jobs', 'show', result.id, where=where)}"
        raise fail(f"{error.get('name')}: {error.get('message')}", details)
    if not as_json:
        console.print(_summary_line(summary))


def follow(
    source: Follower,
    submit: Callable[[], str],
    output: Path,
    timeout: float,
    display: GenerationDisplay,
) -> Generation:
    display.phase("submitting")
    job_id = submit()
    try:
        result = source.wait(job_id, timeout=timeout, on_progress=display.show)
        if result.video is not None:
            display.phase(f"{result.status}, saving")
            source.save(result, output)
    except (KinemaError, httpx.HTTPError, OSError) as exc:  # OSError: TimeoutError too
        raise NotFetched(job_id, exc) from exc
    return result


def command(*args: str, where: JobsLocation) -> str:
    """A kinema command line for the same jobs (the API key is left for the reader to add)."""
    located = ["--server", where.server] if where.server else []
    if where.data_dir is not None and not where.server:
        located = ["--data-dir", str(where.data_dir)]
    return " ".join(["kinema", *args, *located])


def _explained_after_submit(exc: NotFetched, where: JobsLocation, timeout: float) -> str:
    cause = exc.cause
    if isinstance(cause, TimeoutError):
        return f"the clip was not done within --timeout {timeout:g} s"
    if isinstance(cause, OSError):
        return f"cannot write the clip: {cause.strerror or cause} ({cause.filename})"
    return explained(cause, where.server, where.api_key)


def _fetch_later_hint(job_id: str, where: JobsLocation, output: Path) -> str:
    show = command("jobs", "show", job_id, where=where)
    download = command("jobs", "download", job_id, "-o", str(output), where=where)
    return f"job {job_id}: see where it stands with `{show}`; save its clip with `{download}`"


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
    """What `--json` prints: the outcome, the file and how long it all took."""
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


def progress_display() -> Progress:
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
