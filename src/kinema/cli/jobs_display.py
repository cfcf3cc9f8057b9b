"""`kinema jobs`: a generation in one shape (`JobInfo`), whether it comes from this machine's
database or from a server, and how it is displayed (a table of jobs, one job's details)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich import filesize
from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

from kinema.client import Client, Generation
from kinema.domain import Job, JobStatus
from kinema.errors import ClientError, KinemaError
from kinema.service import JobView, Operator, Services
from kinema.wiring import build_services, make_settings


def local_time(timestamp: float | None, layout: str = "%Y-%m-%d %H:%M:%S") -> str:
    return "" if timestamp is None else time.strftime(layout, time.localtime(timestamp))


def short_time(timestamp: float | None) -> str:
    return local_time(timestamp, "%m-%d %H:%M")


@dataclass(frozen=True)
class JobInfo:
    """One generation as `kinema jobs` shows it, whether it came from the store or a server."""

    id: str
    status: str  # queued | running | completed | failed | canceled
    progress: float = 0.0
    stage: str | None = None
    queue_position: int | None = None
    model: str | None = None
    prompt: str | None = None
    owner: str | None = None  # the API key id (local mode only: a server shows only yours)
    owner_name: str | None = None
    created_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    attempts: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] | None = None
    video: dict[str, Any] | None = None  # url (server) or file (local), file_size, duration, …
    error: dict[str, Any] | None = None  # code, message

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class JobListing:
    jobs: list[JobInfo]
    has_more: bool

    def to_json(self) -> dict[str, Any]:
        last_id = self.jobs[-1].id if self.jobs else None
        return {
            "data": [job.to_json() for job in self.jobs],
            "has_more": self.has_more,
            "last_id": last_id,
        }


_V1_STATUS = {"queued": "queued", "in_progress": "running", "completed": "completed"}
_V2_STATUS = {"queued": "queued", "generating": "running", "completed": "completed"}


def _clip(
    file_size: int | None,
    duration: float | None,
    has_audio: bool | None,
    *,
    url: str | None = None,
    file: str | None = None,
) -> dict[str, Any]:
    """`JobInfo.video`: the clip, from wherever the job came (`url` from a server, `file`
    locally)."""
    return {
        "url": url,
        "file": file,
        "file_size": file_size,
        "duration": duration,
        "has_audio": has_audio,
    }


def _info_from_job(
    job: Job, queue_position: int | None, video_file: str | None, owner_name: str | None
) -> JobInfo:
    request = job.request
    artifact = job.artifact if job.status is JobStatus.COMPLETED else None
    video = None
    if artifact is not None:
        video = _clip(artifact.file_size, artifact.duration, artifact.has_audio, file=video_file)
    failed = job.status in (JobStatus.FAILED, JobStatus.CANCELED)
    return JobInfo(
        id=job.id,
        status=job.status.value,
        progress=job.progress,
        stage=job.stage,
        queue_position=queue_position,
        model=request.model,
        prompt=request.prompt,
        owner=job.owner,
        owner_name=owner_name,
        created_at=job.created_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
        attempts=job.attempts,
        params={
            "aspect_ratio": request.aspect_ratio,
            "duration": request.duration,
            "negative_prompt": request.negative_prompt,
            "cfg_scale": request.cfg_scale,
            "generate_audio": request.generate_audio,
            "seed": request.seed,
            "loras": [lora.to_dict() for lora in request.loras] or None,
        },
        timings=job.meta.get("timings"),
        video=video,
        error={"code": job.error_name, "message": job.error_message} if failed else None,
    )


def _info_from_video(body: dict[str, Any]) -> JobInfo:
    """From an OpenAI-compatible video object (`/v1/videos`, kinema's extensions included)."""
    error = body.get("error")
    status = _V1_STATUS.get(body["status"]) or _failed_status((error or {}).get("code"))
    video = None
    if body.get("video_url") or body["status"] == "completed":
        video = _clip(
            body.get("file_size"),
            body.get("duration"),
            body.get("has_audio"),
            url=body.get("video_url"),
        )
    seconds = body.get("seconds")
    return JobInfo(
        id=body["id"],
        status=status,
        progress=float(body.get("progress") or 0.0),
        stage=body.get("stage"),
        queue_position=body.get("queue_position"),
        model=body.get("model"),
        prompt=body.get("prompt"),
        created_at=body.get("created_at"),
        started_at=body.get("started_at"),
        completed_at=body.get("completed_at"),
        attempts=body.get("attempts"),
        params={
            "aspect_ratio": body.get("aspect_ratio"),
            "duration": int(seconds) if seconds else None,
            "size": body.get("size"),
            "negative_prompt": body.get("negative_prompt"),
            "cfg_scale": body.get("cfg_scale"),
            "generate_audio": body.get("generate_audio"),
            "seed": body.get("seed"),
            "loras": body.get("loras") or None,
        },
        timings=body.get("timings"),
        video=video,
        error=error,
    )


def _info_from_generation(generation: Generation) -> JobInfo:
    """From a v2 poll body (servers without /v1/videos: no prompt or params there)."""
    error = generation.error
    name = (error or {}).get("name")
    video = generation.video
    meta = generation.meta
    return JobInfo(
        id=generation.id,
        status=_V2_STATUS.get(generation.status) or _failed_status(name),
        progress=generation.progress,
        stage=meta.get("stage"),
        queue_position=generation.queue_position,
        model=meta.get("model"),
        attempts=meta.get("attempts"),
        params={"seed": meta.get("seed")},
        timings=meta.get("timings"),
        video=None
        if video is None
        else _clip(video.file_size, video.duration, video.has_audio, url=video.url),
        error=None if error is None else {"code": name, "message": error.get("message")},
    )


def _failed_status(error_code: str | None) -> str:
    return "canceled" if (error_code or "").lower() == "canceled" else "failed"


class JobsBackend(Protocol):
    def list(self, limit: int, after: str | None, newest_first: bool) -> JobListing: ...
    def show(self, job_id: str) -> JobInfo: ...
    def cancel(self, job_id: str) -> JobInfo: ...
    def delete(self, job_id: str) -> None: ...
    def download(self, job_id: str, output: Path) -> JobInfo: ...


def _no_clip(job_id: str, status: str) -> KinemaError:
    return KinemaError(f"generation {job_id} has no clip to download (it is {status})")


class RemoteJobs:
    """A server's jobs for one API key: /v1/videos to list, show and delete; v2 to cancel."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self, limit: int, after: str | None, newest_first: bool) -> JobListing:
        page = self._client.list(limit=limit, after=after, order="desc" if newest_first else "asc")
        return JobListing([_info_from_video(video) for video in page.data], page.has_more)

    def show(self, job_id: str) -> JobInfo:
        try:
            return _info_from_video(self._client.retrieve(job_id))
        except ClientError as exc:
            if not _lacks_videos_api(exc):
                raise
        return _info_from_generation(self._client.get(job_id))

    def cancel(self, job_id: str) -> JobInfo:
        self._client.cancel(job_id)
        return self.show(job_id)

    def delete(self, job_id: str) -> None:
        self._client.delete(job_id)

    def download(self, job_id: str, output: Path) -> JobInfo:
        generation = self._client.get(job_id)
        if generation.video is None:
            raise _no_clip(job_id, generation.status)
        self._client.download(generation, output)
        return _info_from_generation(generation)


def _lacks_videos_api(exc: ClientError) -> bool:
    """A 404/405 not in OpenAI's error shape: the server has no /v1/videos (only v2)."""
    openai_shaped = isinstance(exc.body, dict) and isinstance(exc.body.get("error"), dict)
    return exc.status_code in (404, 405) and not openai_shaped


class LocalJobs:
    """The jobs in this machine's database, every key's (or one owner's), through the same
    service the API answers with."""

    def __init__(self, services: Services, owner: str | None) -> None:
        self._services = services
        self._jobs = services.jobs
        self._key_names = {key.id: key.name for key in services.keys.list()}
        self._reader = Operator(None if owner is None else self._owner_id(owner))

    def _owner_id(self, owner: str) -> str:
        """--owner takes a key id or name (an id no key has, such as `local`, is taken as is)."""
        named = [key_id for key_id, name in self._key_names.items() if name == owner]
        if owner in self._key_names or not named:
            return owner
        if len(named) > 1:
            raise KinemaError(f"several keys are named {owner!r}; name one by id: {named}")
        return named[0]

    def list(self, limit: int, after: str | None, newest_first: bool) -> JobListing:
        page = self._jobs.list(
            self._reader, "", after=after, limit=limit, newest_first=newest_first
        )
        return JobListing([self._info(view) for view in page.views], page.has_more)

    def show(self, job_id: str) -> JobInfo:
        return self._info(self._jobs.get(self._reader, job_id, ""))

    def cancel(self, job_id: str) -> JobInfo:
        return self._info(self._jobs.cancel(self._reader, job_id, ""))

    def delete(self, job_id: str) -> None:
        self._jobs.delete(self._reader, job_id)

    def download(self, job_id: str, output: Path) -> JobInfo:
        view = self._jobs.get(self._reader, job_id, "")
        job = view.job
        if job.status is not JobStatus.COMPLETED or job.artifact is None:
            raise _no_clip(job_id, job.status.value)
        self._services.artifacts.download_to(job.artifact.key, output)
        return self._info(view)

    def _info(self, view: JobView) -> JobInfo:
        job = view.job
        video_file = self._artifact_location(job.artifact.key) if job.artifact else None
        return _info_from_job(job, view.queue_position, video_file, self._key_names.get(job.owner))

    def _artifact_location(self, key: str) -> str:
        settings = self._services.settings
        storage = (settings.storage or "").strip()
        if storage in ("", "local"):
            return str(settings.artifacts_dir / key)
        return f"{storage.rstrip('/')}/{key}"


@dataclass(frozen=True)
class JobsLocation:
    """Whose jobs: a server's for one API key, or (no server) this machine's database."""

    server: str | None
    api_key: str | None
    data_dir: Path | None
    store_url: str | None
    owner: str | None = None  # local database only: one key's jobs


@contextmanager
def open_jobs(where: JobsLocation) -> Iterator[JobsBackend]:
    if where.server:
        if where.owner is not None:
            raise KinemaError("--owner is for the local database; a server shows your key's jobs")
        with Client(where.server, where.api_key) as client:
            yield RemoteJobs(client)
        return
    services = build_services(make_settings(data_dir=where.data_dir, store_url=where.store_url))
    try:
        yield LocalJobs(services, where.owner)
    finally:
        services.close()


# -- rendering ---------------------------------------------------------------------------------

STATUS_STYLES = {
    "queued": "dim",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "canceled": "yellow",
}
PROMPT_WIDTH = 40


def _status_text(job: JobInfo) -> Text:
    label = job.status
    if job.status == "queued" and job.queue_position is not None:
        label += f" #{job.queue_position}"
    return Text(label, style=STATUS_STYLES.get(job.status, ""))


def _clip_text(job: JobInfo) -> str:
    """The clip's length and size once there is one; the requested length before."""
    if job.video and job.video.get("duration") is not None:
        size = job.video.get("file_size")
        return f"{job.video['duration']:.1f} s" + (f", {filesize.decimal(size)}" if size else "")
    requested = job.params.get("duration")
    return f"{requested} s" if requested else ""


def _truncated(text: str | None, width: int = PROMPT_WIDTH) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


@dataclass(frozen=True)
class _Column:
    header: str
    cell: Callable[[JobInfo], str | Text]
    justify: JustifyMethod = "left"


JOB_COLUMNS = (
    _Column("id", lambda job: job.id),
    _Column("status", _status_text),
    _Column("progress", lambda job: f"{job.progress:.0f}%", "right"),
    _Column("model", lambda job: job.model or ""),
    _Column("prompt", lambda job: _truncated(job.prompt)),
    _Column("created", lambda job: short_time(job.created_at)),
    _Column("clip", _clip_text),
    _Column("owner", lambda job: job.owner_name or job.owner or ""),
)
# On a narrow terminal the prompt shrinks to SHORT_PROMPT, then these columns go in this order,
# then the prompt shrinks to SHORTEST_PROMPT. Ids stay whole: they are what the other commands take.
DROPPED_WHEN_NARROW = ("owner", "created", "model", "clip")
SHORT_PROMPT = 20
SHORTEST_PROMPT = 10


def jobs_table(jobs: list[JobInfo], console: Console) -> Table:
    """One row per job, fitted to the console's width (see DROPPED_WHEN_NARROW)."""
    columns = [c for c in JOB_COLUMNS if c.header != "owner" or any(job.owner for job in jobs)]
    widest_prompt = max(len(_truncated(job.prompt)) for job in jobs)
    table = _table_of(columns, jobs, widest_prompt)
    for header in DROPPED_WHEN_NARROW:
        if _natural_width(table, console) - (widest_prompt - SHORT_PROMPT) <= console.width:
            break
        columns = [column for column in columns if column.header != header]
        table = _table_of(columns, jobs, widest_prompt)
    excess = _natural_width(table, console) - console.width
    if excess > 0:
        table = _table_of(columns, jobs, max(SHORTEST_PROMPT, widest_prompt - excess))
    return table


def _natural_width(table: Table, console: Console) -> int:
    return console.measure(table, options=console.options.update_width(10_000)).maximum


def _table_of(columns: list[_Column], jobs: list[JobInfo], prompt_width: int) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in columns:
        width = prompt_width if column.header == "prompt" else None
        table.add_column(column.header, justify=column.justify, no_wrap=True, max_width=width)
    for job in jobs:
        table.add_row(*(column.cell(job) for column in columns))
    return table


def job_details(job: JobInfo) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for name, value in _detail_rows(job):
        table.add_row(name, value)
    return table


def _detail_rows(job: JobInfo) -> Iterator[tuple[str, str | Text]]:
    yield "id", job.id
    yield "status", _status_text(job)
    yield "progress", f"{job.progress:.1f}%"
    if job.queue_position is not None:
        yield "queue position", str(job.queue_position)
    yield "model", job.model or ""
    if job.owner:
        yield "owner", f"{job.owner_name} ({job.owner})" if job.owner_name else job.owner
    yield "prompt", job.prompt or ""
    for name, value in job.params.items():
        if value is not None:
            yield name.replace("_", " "), _param_text(name, value)
    for name, moment in (("created", job.created_at), ("started", job.started_at)):
        if moment is not None:
            yield name, local_time(moment)
    if job.completed_at is not None:
        yield "finished", local_time(job.completed_at)
    if job.attempts is not None:
        yield "attempts", str(job.attempts)
    if job.timings:
        yield "timings", ", ".join(f"{stage} {sec:.2f} s" for stage, sec in job.timings.items())
    if job.video:
        yield from _video_rows(job.video)
    if job.error:
        yield "error", Text(f"{job.error.get('code')}: {job.error.get('message')}", style="red")


def _param_text(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name == "loras" and isinstance(value, list):
        return ", ".join(f"{lora['name']} at {lora['scale']:g}" for lora in value)
    return f"{value} s" if name == "duration" else str(value)


def _video_rows(video: dict[str, Any]) -> Iterator[tuple[str, str]]:
    if video.get("url"):
        yield "video url", video["url"]
    if video.get("file"):
        yield "video file", video["file"]
    size = video.get("file_size")
    if size is not None:
        yield "file size", f"{filesize.decimal(size)} ({size} bytes)"
    if video.get("duration") is not None:
        yield "clip duration", f"{video['duration']:.2f} s"
    if video.get("has_audio") is not None:
        yield "audio", "yes" if video["has_audio"] else "no"


def status_line(job: JobInfo) -> str:
    after = " (stops at its next step)" if job.status == "running" else ""
    return f"{job.id}: {job.status}{after}"
