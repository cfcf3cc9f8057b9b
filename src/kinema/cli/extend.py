"""`kinema extend` and `kinema remix`: a new clip from a completed one, on a server or here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from kinema.catalog.plan import check_request
from kinema.catalog.registry import get_spec
from kinema.cli.app import (
    ApiKeyOption,
    AsJson,
    DataDir,
    OptionalOutput,
    Server,
    app,
    explained,
    fail,
)
from kinema.cli.follow import make_clip
from kinema.cli.generate import EVERY_OWNER, LocalSource, RemoteSource, local_source, remote_source
from kinema.cli.jobs_display import JobsLocation
from kinema.domain import Job, JobStatus
from kinema.errors import KinemaError
from kinema.wiring import build_services, make_settings

# Ids may begin with "-" (URL-safe base64): read an unknown "-x…" as the id, as `kinema jobs` does.
TAKES_AN_ID = {"ignore_unknown_options": True}
VideoId = Annotated[
    str, typer.Argument(metavar="ID", help="a completed clip's id (from `kinema jobs list`)")
]
Timeout = Annotated[float, typer.Option(help="seconds to wait for the clip")]


@app.command(context_settings=TAKES_AN_ID)
def extend(
    video_id: VideoId,
    seconds: Annotated[int, typer.Option(min=1, help="whole seconds to add after its end")],
    prompt: Annotated[
        str | None,
        typer.Option(help="what the added seconds show (default: the clip's own prompt)"),
    ] = None,
    output: OptionalOutput = None,
    server: Server = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDir = None,
    timeout: Timeout = 3600.0,
    as_json: AsJson = False,
) -> None:
    """Make a completed clip longer: the clip, then --seconds more that follow on from its last
    frames (sound too), as one mp4.

    A new job with its own id; the clip it extends is left as it is. Without -o the file is
    ID-extended.mp4 in this folder."""

    def submit(source: RemoteSource | LocalSource) -> str:
        return source.extend(video_id, prompt, seconds)

    target = output or Path(f"{video_id}-extended.mp4")
    _make(
        video_id, "extended", server, api_key, data_dir, submit, target, timeout, as_json, seconds
    )


@app.command(context_settings=TAKES_AN_ID)
def remix(
    video_id: VideoId,
    prompt: Annotated[str, typer.Option(help="what the new clip shows")],
    output: OptionalOutput = None,
    server: Server = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDir = None,
    timeout: Timeout = 3600.0,
    as_json: AsJson = False,
) -> None:
    """Remake a completed clip for a new prompt, keeping its size, length, seed and motion.

    A new job with its own id. Without -o the file is ID-remix.mp4 in this folder."""

    def submit(source: RemoteSource | LocalSource) -> str:
        return source.remix(video_id, prompt)

    target = output or Path(f"{video_id}-remix.mp4")
    _make(video_id, "remixed", server, api_key, data_dir, submit, target, timeout, as_json)


def _make(
    video_id: str,
    verb: str,
    server: str | None,
    api_key: str | None,
    data_dir: Path | None,
    submit: Callable[[RemoteSource | LocalSource], str],
    output: Path,
    timeout: float,
    as_json: bool,
    seconds: float | None = None,
) -> None:
    where = JobsLocation(server, api_key, data_dir, None)
    if server:
        make_clip(
            where, lambda shown: remote_source(where, shown), submit, output, timeout, as_json
        )
        return
    # Here the worker must serve the clip's model: read the clip first, refusing before the model
    # loads what the service would refuse once it has.
    source = _completed_clip(video_id, verb, data_dir, seconds)
    settings = make_settings(data_dir=data_dir, model=source.request.model)
    make_clip(where, lambda shown: local_source(settings, shown), submit, output, timeout, as_json)


def _completed_clip(video_id: str, verb: str, data_dir: Path | None, seconds: float | None) -> Job:
    services = build_services(make_settings(data_dir=data_dir))
    try:
        job = services.jobs.owned(EVERY_OWNER, video_id)
        if job.status is not JobStatus.COMPLETED or job.artifact is None:
            raise fail(f"ID: {video_id} is {job.status}; only a completed clip can be {verb}")
        if seconds is not None:
            check_request(replace(job.request, duration=seconds), get_spec(job.request.model))
    except KinemaError as exc:
        raise fail(explained(exc)) from None
    finally:
        services.close()
    return job
