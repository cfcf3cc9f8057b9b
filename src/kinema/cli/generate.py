"""`kinema generate`: a prompt (and images, if given) to an mp4, on a server or on this machine,
with its progress."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kinema.api.inputs import as_inputs, input_policy, refused_input
from kinema.catalog.loras import lora_error
from kinema.catalog.plan import check_request
from kinema.catalog.registry import HOSTED_ALIASES, KLING_ALIASES, ServedModels, get_spec
from kinema.cli.app import (
    ApiKeyOption,
    AsJson,
    DataDir,
    Output,
    Server,
    app,
    complete_model,
    explained,
    fail,
)
from kinema.cli.follow import GenerationDisplay, make_clip
from kinema.cli.jobs_display import JobsLocation
from kinema.client import (
    DEFAULT_MODEL,
    IMAGE_TO_VIDEO_MODEL,
    Client,
    DownloadCallback,
    Generation,
    ProgressCallback,
    poll_until_done,
)
from kinema.config import Settings
from kinema.contracts.aimlapi import (
    body_model,
    parse_create_body,
    render_generation,
)
from kinema.contracts.fields import validation_message
from kinema.domain import ApiKey, GenerationRequest, Job
from kinema.errors import FieldError, ModelUnavailable, NotFound, ValidationFailed
from kinema.input_media import InputImage, InputPolicy, InputRefused, fetch_image, verify_image
from kinema.service import InputFile, Operator
from kinema.wiring import make_settings, served_models

if TYPE_CHECKING:
    from kinema.worker.in_process import InProcessWorker

SIZE = re.compile(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*")
URL_PREFIXES = ("http://", "https://", "data:")
IMAGE_FLAGS = {"image_url": "--image", "tail_image_url": "--last-image"}


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="what the clip shows and sounds like")],
    output: Output,
    model: Annotated[
        str | None, typer.Option(help="model id or alias", autocompletion=complete_model)
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            metavar="PATH|URL",
            help="the first frame: a PNG, JPEG or WebP file, or an https:// URL; with a Kling "
            f"model id (or no --model against a server) the clip is made as {IMAGE_TO_VIDEO_MODEL}",
        ),
    ] = None,
    last_image: Annotated[
        str | None,
        typer.Option(metavar="PATH|URL", help="the last frame: a file or URL, as --image"),
    ] = None,
    seconds: Annotated[
        float | None,
        typer.Option(help="the clip's length (default 5; Kling model ids: 5 or 10)"),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="the older name of --seconds", show_default=False)
    ] = None,
    size: Annotated[
        str | None,
        typer.Option(
            metavar="WxH", help="frame size in pixels, e.g. 1280x720 (default: the model's)"
        ),
    ] = None,
    fps: Annotated[
        float | None, typer.Option(help="frames per second (default: the model's)")
    ] = None,
    aspect_ratio: Annotated[
        str | None, typer.Option(help="16:9, 9:16 or 1:1 (default 16:9)")
    ] = None,
    negative_prompt: Annotated[str | None, typer.Option()] = None,
    cfg_scale: Annotated[float, typer.Option(help="0..1, higher follows the prompt closer")] = 0.5,
    audio: Annotated[
        bool | None,
        typer.Option("--audio/--no-audio", help="generate sound (default: if the model makes it)"),
    ] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    lora: Annotated[
        list[str] | None,
        typer.Option(
            "--lora",
            metavar="NAME[:SCALE]",
            help="a LoRA the deployment offers (`kinema loras`) at SCALE (default 1); repeatable",
            show_default=False,
        ),
    ] = None,
    server: Server = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the clip")] = 3600.0,
    as_json: AsJson = False,
) -> None:
    """Turn a prompt (and images, if given) into an mp4, on a server or (without --server) here.

    Shows the queue position, the stage and step progress, then the download; with --json the
    progress stays on stderr and stdout gets one JSON object (id, status, path, file_size,
    duration, seconds_taken, seed, model)."""
    length_flag = "--duration" if duration is not None and seconds is None else "--seconds"
    width, height = _size(size)
    options = {
        "aspect_ratio": aspect_ratio,
        "duration": _number(_length(seconds, duration)),
        "width": width,
        "height": height,
        "fps": _number(fps),
        "negative_prompt": negative_prompt,
        "cfg_scale": cfg_scale,
        "generate_audio": audio,
        "seed": seed,
        "loras": _loras(lora or []),
    }
    given = {
        field: value
        for field, value in (("image_url", image), ("tail_image_url", last_image))
        if value is not None
    }
    settings = None if server else _local_settings(model, data_dir)
    chosen = body_model_id(model, bool(given), settings)
    _check_request(prompt, chosen, {**options, **given}, length_flag, model is None, server)
    images = _given_images(given, settings)
    where = JobsLocation(server, api_key, data_dir, None)

    def submit(source: RemoteSource | LocalSource) -> str:
        return source.submit(prompt, chosen, options, images)

    if settings is None:
        make_clip(
            where, lambda shown: remote_source(where, shown), submit, output, timeout, as_json
        )
    else:
        _check_locally(prompt, chosen, options, images, settings, length_flag)
        local = settings
        make_clip(where, lambda shown: local_source(local, shown), submit, output, timeout, as_json)


def body_model_id(model: str | None, with_images: bool, settings: Settings | None) -> str:
    """The model id a create body names: --model, or without it the Kling default (on a server)
    or the model this machine serves. With images, a Kling text-to-video id (whose body takes
    none) becomes the Kling image-to-video id, which any kinema server serves as its default."""
    chosen = model or (served_models(settings)[0] if settings is not None else DEFAULT_MODEL)
    return IMAGE_TO_VIDEO_MODEL if with_images and chosen in KLING_ALIASES else chosen


def _local_settings(model: str | None, data_dir: Path | None) -> Settings:
    """This machine's settings for the model to load: --model (a Kling id means the default)."""
    if model and model not in HOSTED_ALIASES:
        try:
            get_spec(model)
        except ModelUnavailable as exc:
            raise fail(f"--model: {exc}") from None
    served = model if model and model not in HOSTED_ALIASES else None
    return make_settings(data_dir=data_dir, model=served)


def _size(size: str | None) -> tuple[int | None, int | None]:
    if size is None:
        return None, None
    match = SIZE.fullmatch(size)
    if match is None or not int(match[1]) or not int(match[2]):
        raise fail(f"--size: {size!r} is not WIDTHxHEIGHT in pixels, e.g. 1280x720")
    return int(match[1]), int(match[2])


def _loras(given: list[str]) -> list[dict[str, object]] | None:
    """--lora NAME[:SCALE] as the body's `loras`; None when none is given."""
    chosen: list[dict[str, object]] = []
    for item in given:
        name, colon, scale = item.rpartition(":")
        if not colon:
            chosen.append({"name": item, "scale": 1.0})
            continue
        try:
            chosen.append({"name": name, "scale": float(scale)})
        except ValueError:
            raise fail(f"--lora: {item!r}: SCALE must be a number, e.g. {name}:0.8") from None
    return chosen or None


def _length(seconds: float | None, duration: float | None) -> float | None:
    if seconds is not None and duration is not None and seconds != duration:
        raise fail(
            "--seconds and --duration are one option (--duration is its older name): give one"
        )
    return seconds if seconds is not None else duration


def _number(value: float | None) -> float | int | None:
    """Whole numbers as ints: the hosted ids' bodies take 5 or 10, not 5.0."""
    return int(value) if value is not None and value.is_integer() else value


def _check_request(
    prompt: str,
    model: str,
    fields: dict[str, Any],
    length_flag: str,
    unnamed: bool = False,
    server: str | None = None,
) -> None:
    """Refuse what the server would refuse before anything loads, is submitted or waits: the same
    body model, its errors named by flag, and the options that body would leave out."""
    given = {name: value for name, value in fields.items() if value is not None}
    errors: list[FieldError] = []
    try:
        parse_create_body({"model": model, "prompt": prompt, **given})
    except ValidationFailed as exc:
        errors += exc.errors
    errors += _not_taken(model, given)
    if errors:
        refused = _as_typed(ValidationFailed(validation_message(errors), errors), length_flag)
        hint = _hosted_id_hint(model, unnamed, server)
        shaped = any(error.field in SHAPE_FIELDS for error in errors)
        raise fail(explained(refused), hint if shaped else None)


# The fields in which the hosted API's ids are narrower than kinema's own ids.
SHAPE_FIELDS = frozenset({"duration", "size", "fps", "aspect_ratio", "tail_image_url"})


def _hosted_id_hint(model: str, unnamed: bool, server: str | None) -> str | None:
    """Why a hosted API id refuses a length, size or rate kinema's models make, and what to do."""
    if model not in HOSTED_ALIASES:
        return None
    listing = f"kinema models --server {server}" if server else "kinema models"
    asked = f"without --model the server is asked for {model}" if unnamed else model
    return (
        f"{asked}, a hosted API id, which takes the hosted API's options only; a kinema model id "
        f"(`{listing}` lists them) takes any --seconds, --size and --fps: --model ID"
    )


def _not_taken(model: str, given: dict[str, Any]) -> list[FieldError]:
    """The options `model`'s body has no field for (it would ignore them without a word)."""
    taken = body_model(model).model_fields
    missing = dict.fromkeys(
        "size" if name in ("width", "height") else name for name in given if name not in taken
    )
    return [FieldError(name, f"not taken by {model}") for name in missing]


def _as_typed(refused: ValidationFailed, length_flag: str) -> ValidationFailed:
    """The length's errors named by the flag given: --seconds, or its older name --duration."""
    if length_flag == "--seconds":
        return refused
    errors = [replace(e, field=length_flag) if e.field == "duration" else e for e in refused.errors]
    return ValidationFailed(refused.message, errors)


@dataclass(frozen=True)
class GivenImage:
    """--image or --last-image: the body field, the path or URL as given, and the image's bytes
    verified here (None: a URL the server fetches itself)."""

    field: str
    reference: str
    image: InputImage | None


# What lets this machine fetch an image URL it refuses by default.
POLICY_SETTINGS = {
    "bad_scheme": "KINEMA_INPUT_ALLOW_HTTP=1 lets this machine fetch http:// URLs",
    "refused_address": "KINEMA_INPUT_ALLOW_PRIVATE=1 lets this machine fetch from private "
    "and loopback addresses",
}


class _Refused(Exception):
    def __init__(self, refused: ValidationFailed, then: str | None = None) -> None:
        self.refused = refused
        self.then = then


def _given_images(given: dict[str, str], settings: Settings | None) -> list[GivenImage]:
    """Each image read and verified before anything is submitted; locally a URL is fetched
    here too, under this machine's input policy (KINEMA_INPUT_*)."""
    try:
        return [_given_image(field, reference, settings) for field, reference in given.items()]
    except _Refused as exc:
        raise fail(explained(exc.refused), exc.then) from None


def _given_image(field: str, reference: str, settings: Settings | None) -> GivenImage:
    if reference.lower().startswith(URL_PREFIXES):
        if settings is None:
            return GivenImage(field, reference, None)  # the server fetches it
        try:
            return GivenImage(field, reference, fetch_image(reference, input_policy(settings)))
        except InputRefused as refused:
            then = POLICY_SETTINGS.get(refused.kind)
            raise _Refused(refused_input(field, refused), then) from None
    try:
        data = Path(reference).expanduser().read_bytes()
    except OSError as exc:
        message = _unreadable(reference, exc)
        raise _Refused(ValidationFailed(message, [FieldError(field, message)])) from None
    max_bytes = settings.input_max_bytes if settings is not None else InputPolicy().max_bytes
    try:
        return GivenImage(field, reference, verify_image(data, max_bytes))
    except InputRefused as refused:
        raise _Refused(refused_input(field, refused)) from None


def _unreadable(path: str, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {path}"
    if isinstance(exc, IsADirectoryError):
        return f"{path} is a folder, not an image file"
    return f"cannot read {path}: {exc.strerror or exc}"


def local_request(
    prompt: str, model: str, options: dict[str, Any], images: Sequence[GivenImage]
) -> tuple[GenerationRequest, list[InputFile]]:
    """The request and input files a server would make of this body, the images already here."""
    references = {image.field: image.reference for image in images}
    body = parse_create_body({"model": model, "prompt": prompt, **options, **references})
    by_field = {image.field: image.image for image in images}
    named = body.images()
    verified = [by_field[reference.field] for reference in named]
    present = [image for image in verified if image is not None]
    assert len(present) == len(named), "a local generation has every image read"
    request = body.to_request([(image.width, image.height) for image in present])
    return request, as_inputs(named, present)


def _check_locally(
    prompt: str,
    model: str,
    options: dict[str, Any],
    images: Sequence[GivenImage],
    settings: Settings,
    length_flag: str,
) -> None:
    """What the served model cannot make (size, length, rate, sound) refused before it loads."""
    request, _ = local_request(prompt, model, options, images)
    resolved = ServedModels.of(served_models(settings)).resolve(request.model)
    spec = get_spec(resolved or model)
    try:
        check_request(replace(request, model=resolved or request.model), spec)
    except ValidationFailed as exc:
        raise fail(explained(_as_typed(exc, length_flag))) from None
    if (error := lora_error(request.loras, spec, settings.lora_dir)) is not None:
        raise fail(explained(ValidationFailed(error.message, [error])))


class RemoteSource:
    """A kinema (or AI/ML API) server, through `kinema.Client`."""

    def __init__(self, client: Client, on_bytes: DownloadCallback | None = None) -> None:
        self._client = client
        self._on_bytes = on_bytes

    def submit(
        self, prompt: str, model: str, options: dict[str, Any], images: Sequence[GivenImage]
    ) -> str:
        sent = {
            image.field: image.image.data if image.image is not None else image.reference
            for image in images
        }
        return self._client.create(
            prompt,
            model=model,
            image=sent.get("image_url"),
            last_image=sent.get("tail_image_url"),
            **options,
        ).id

    def extend(self, video_id: str, prompt: str | None, seconds: float) -> str:
        """`prompt` None: the video's own prompt."""
        if prompt is None:
            prompt = str(self._client.retrieve(video_id)["prompt"])
        return self._client.extend(video_id, prompt, seconds).id

    def remix(self, video_id: str, prompt: str) -> str:
        return self._client.remix(video_id, prompt).id

    def wait(self, job_id: str, timeout: float, on_progress: ProgressCallback) -> Generation:
        return self._client.wait(
            job_id, poll_interval=0.5, timeout=timeout, on_progress=on_progress
        )

    def save(self, generation: Generation, output: Path) -> None:
        self._client.download(generation, output, on_bytes=self._on_bytes)


LOCAL_OWNER = ApiKey(id="local", name="local", created_at=0.0)
EVERY_OWNER = Operator()  # this machine holds the database: every key's jobs


def owner_of(job: Job) -> ApiKey:
    """Who a job made from `job` (an extension, a remix) belongs to: `job`'s own key."""
    return LOCAL_OWNER if job.owner == LOCAL_OWNER.id else ApiKey(job.owner, job.owner, 0.0)


class LocalSource:
    """A worker thread in this process, through the job service as the API would use it; jobs are
    shown in the v2 contract's terms, as a server's are."""

    def __init__(self, worker: InProcessWorker) -> None:
        self._worker = worker
        self._jobs = worker.services.jobs

    def submit(
        self, prompt: str, model: str, options: dict[str, Any], images: Sequence[GivenImage]
    ) -> str:
        request, inputs = local_request(prompt, model, options, images)
        return self._jobs.submit(LOCAL_OWNER, request, inputs=inputs).id

    def extend(self, video_id: str, prompt: str | None, seconds: float) -> str:
        """`prompt` None: the clip's own prompt. The extension is the clip's owner's job."""
        source = self._jobs.owned(EVERY_OWNER, video_id)
        prompt = source.request.prompt if prompt is None else prompt
        return self._jobs.extend(owner_of(source), video_id, prompt, seconds).id

    def remix(self, video_id: str, prompt: str) -> str:
        source = self._jobs.owned(EVERY_OWNER, video_id)
        return self._jobs.remix(owner_of(source), video_id, prompt).id

    def wait(self, job_id: str, timeout: float, on_progress: ProgressCallback) -> Generation:
        return poll_until_done(
            lambda: self._get(job_id), poll_interval=0.2, timeout=timeout, on_progress=on_progress
        )

    def _get(self, job_id: str) -> Generation:
        self._worker.check_alive()
        view = self._jobs.get(EVERY_OWNER, job_id, "")
        return Generation.from_json(render_generation(view))

    def save(self, generation: Generation, output: Path) -> None:
        job = self._jobs.owned(EVERY_OWNER, generation.id)
        if job.artifact is None:
            raise NotFound(f"generation {generation.id} has no video")
        self._worker.services.artifacts.download_to(job.artifact.key, output)


@contextmanager
def remote_source(where: JobsLocation, display: GenerationDisplay) -> Iterator[RemoteSource]:
    assert where.server is not None
    with Client(where.server, where.api_key) as client:
        yield RemoteSource(client, display.downloaded)


@contextmanager
def local_source(settings: Settings, display: GenerationDisplay) -> Iterator[LocalSource]:
    """A worker here for the model `settings` serve first, loaded while `display` says so."""
    display.phase("starting (no --server: generating on this machine)")
    from kinema.worker.in_process import InProcessWorker

    with InProcessWorker(settings, on_phase=display.phase) as worker:
        yield LocalSource(worker)
