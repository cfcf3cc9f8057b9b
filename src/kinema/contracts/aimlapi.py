"""The AI/ML API v2 video contract's bodies."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    model_validator,
)

from kinema.catalog.registry import (
    FULL_HD_SIZES,
    KLING_ALIASES,
    KLING_IMAGE_ALIASES,
    LTXV_ALIASES,
)
from kinema.contracts.fields import field_errors_from_pydantic, validation_message
from kinema.domain import GenerationRequest, JobStatus, LoraChoice
from kinema.errors import ValidationFailed
from kinema.service import MAX_SEED, JobView

PROMPT_LIMIT = 2500

WIRE_STATUS = {
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "generating",
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "error",
    JobStatus.CANCELED: "error",
}


def _duration(value: Any) -> Any:
    if isinstance(value, str) and value.strip() in ("5", "10"):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value in (5, 10):
        return value
    raise ValueError('must be 5 or 10 (or the strings "5" / "10")')


def _prompt(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    stripped = value.strip()
    if not 1 <= len(stripped) <= PROMPT_LIMIT:
        raise ValueError(f"must be 1..{PROMPT_LIMIT} characters after stripping")
    if not has_visible_text(stripped):
        raise ValueError("must contain visible text (it holds only invisible characters)")
    return stripped


# Characters that draw nothing although Unicode does not class them as space or format.
INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Format (zero-width), control, separator, combining-only, surrogate, private and unassigned.
INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Zs", "Zl", "Zp", "Mn", "Me", "Cs", "Co", "Cn"})


Prompt = Annotated[str, BeforeValidator(_prompt)]


def has_visible_text(text: str) -> bool:
    return any(
        ch not in INVISIBLE_LETTERS and unicodedata.category(ch) not in INVISIBLE_CATEGORIES
        for ch in text
    )


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a number, not {value!r}")
    return value


def _whole_seconds(allowed: tuple[int, ...]) -> Any:
    def parse(value: Any) -> Any:
        if isinstance(value, str) and value.strip().isdigit() and int(value) in allowed:
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value in allowed:
            return value
        listed = ", ".join(str(seconds) for seconds in allowed)
        raise ValueError(f"must be one of {listed} (numbers or strings)")

    return parse


def _seconds(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError("must be a number of seconds") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("must be a number of seconds")
    return value


class LoraField(BaseModel):
    """A LoRA the deployment offers (`kinema loras`), by name, at a scale (kinema's extension)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    scale: Annotated[float, Field(strict=True, ge=-2.0, le=2.0), BeforeValidator(_finite)] = 1.0


class _SharedFields(BaseModel):
    """What every model id's body takes on the v2 endpoint."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())
    # The request's field names where this body calls them otherwise (named in errors).
    field_names: ClassVar[Mapping[str, str]] = {}

    model: StrictStr = Field(min_length=1)
    prompt: Prompt
    negative_prompt: Annotated[StrictStr, Field(max_length=PROMPT_LIMIT)] | None = None
    cfg_scale: Annotated[float, Field(strict=True, ge=0.0, le=1.0), BeforeValidator(_finite)] = 0.5
    # None: the model's own choice (sound where the model makes sound).
    generate_audio: StrictBool | None = None
    seed: Annotated[int, Field(strict=True, ge=0, le=MAX_SEED)] | None = None
    enhance_prompt: StrictBool = False
    loras: Annotated[list[LoraField], Field(max_length=4)] = []
    provider: StrictStr | None = None
    # Where to POST the final poll body (a signed webhook), as Kling's own API allows.
    callback_url: Annotated[StrictStr, Field(max_length=2048)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        """An explicit null on an optional field asks for its default, as if it were left out."""
        if not isinstance(data, dict):
            return data
        optional = {name for name, field in cls.model_fields.items() if not field.is_required()}
        return {k: v for k, v in data.items() if not (v is None and k in optional)}

    def images(self) -> list[ImageReference]:
        """The images the body names, in the order `to_request` takes their sizes."""
        return []

    def to_request(self, image_sizes: Sequence[tuple[int, int]] = ()) -> GenerationRequest:
        return GenerationRequest(
            model=self.model,
            prompt=self.prompt,
            negative_prompt=self.negative_prompt or None,
            cfg_scale=float(self.cfg_scale),
            generate_audio=self.generate_audio,
            seed=self.seed,
            enhance_prompt=self.enhance_prompt,
            loras=tuple(LoraChoice(lora.name, float(lora.scale)) for lora in self.loras),
            **self._shape(image_sizes),
        )

    def _shape(self, image_sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class ImageReference:
    """An image a body names: a URL or a data URI, for the output frame `frame` (-1: the last)."""

    field: str  # the body's field, named in errors
    reference: str
    frame: int


ImageUrl = Annotated[StrictStr, Field(min_length=1)]
AspectRatio = Literal["16:9", "9:16", "1:1"]


def _first_and_last(image_url: str | None, tail_image_url: str | None) -> list[ImageReference]:
    first = [ImageReference("image_url", image_url, 0)] if image_url else []
    last = [ImageReference("tail_image_url", tail_image_url, -1)] if tail_image_url else []
    return first + last


def nearest_aspect_ratio(width: int, height: int) -> str:
    shapes = {ratio: w / h for ratio, (w, h) in FULL_HD_SIZES.items()}
    return min(shapes, key=lambda ratio: abs(math.log(shapes[ratio] * height / width)))


class CreateGenerationBody(_SharedFields):
    """Kling text-to-video, as the hosted API takes it."""

    aspect_ratio: AspectRatio = "16:9"
    duration: Annotated[Literal[5, 10], BeforeValidator(_duration)] = 5

    def _shape(self, image_sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
        return {"aspect_ratio": self.aspect_ratio, "duration": self.duration}


class KlingImageBody(_SharedFields):
    """Kling image-to-video: the image is the first frame (`tail_image_url`: the last); the clip
    takes the shape of the image."""

    image_url: ImageUrl
    tail_image_url: ImageUrl | None = None
    duration: Annotated[Literal[5, 10], BeforeValidator(_duration)] = 5

    def images(self) -> list[ImageReference]:
        return _first_and_last(self.image_url, self.tail_image_url)

    def _shape(self, image_sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
        shape = nearest_aspect_ratio(*image_sizes[0]) if image_sizes else "16:9"
        return {"aspect_ratio": shape, "duration": self.duration}


LTXV_SIZES: Mapping[str, tuple[int, int]] = {
    "1080p": (1920, 1080),
    "1440p": (2560, 1440),
    "2160p": (3840, 2160),
}


class LtxvBody(_SharedFields):
    """LTX-2 as the hosted API serves it (`ltxv/ltxv-2`, `ltxv/ltxv-2-fast`)."""

    field_names: ClassVar[Mapping[str, str]] = {"size": "resolution"}

    image_url: ImageUrl | None = None
    duration: Annotated[Literal[6, 8, 10], BeforeValidator(_whole_seconds((6, 8, 10)))] = 6
    resolution: Literal["1080p", "1440p", "2160p"] = "1080p"
    aspect_ratio: Literal["16:9"] = "16:9"
    fps: Annotated[Literal[25, 50], BeforeValidator(_whole_seconds((25, 50)))] = 25

    def images(self) -> list[ImageReference]:
        return _first_and_last(self.image_url, None)

    def _shape(self, image_sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
        width, height = LTXV_SIZES[self.resolution]
        return {
            "aspect_ratio": self.aspect_ratio,
            "duration": self.duration,
            "width": width,
            "height": height,
            "fps": float(self.fps),
        }


class KinemaBody(_SharedFields):
    """kinema's own model ids: any length, size and rate the model makes, images optional."""

    field_names: ClassVar[Mapping[str, str]] = {"size": "width"}

    aspect_ratio: AspectRatio = "16:9"
    duration: Annotated[float, BeforeValidator(_seconds), Field(gt=0, le=600)] = 5
    width: Annotated[int, Field(strict=True, ge=1, le=16384)] | None = None
    height: Annotated[int, Field(strict=True, ge=1, le=16384)] | None = None
    fps: Annotated[float, BeforeValidator(_finite), Field(gt=0, le=240)] | None = None
    image_url: ImageUrl | None = None
    tail_image_url: ImageUrl | None = None

    @model_validator(mode="after")
    def _width_with_height(self) -> KinemaBody:
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together: send both, or neither")
        return self

    def images(self) -> list[ImageReference]:
        return _first_and_last(self.image_url, self.tail_image_url)

    def _shape(self, image_sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
        return {
            "aspect_ratio": self.aspect_ratio,
            "duration": self.duration,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
        }


GenerationBody = CreateGenerationBody | KlingImageBody | LtxvBody | KinemaBody


def body_model(model: object) -> type[GenerationBody]:
    """Which body the v2 endpoint reads for a `model`: each hosted id keeps its own fields."""
    if model in KLING_ALIASES or not isinstance(model, str):
        return CreateGenerationBody
    if model in KLING_IMAGE_ALIASES:
        return KlingImageBody
    if model in LTXV_ALIASES:
        return LtxvBody
    return KinemaBody


def parse_create_body(body: dict[str, Any]) -> GenerationBody:
    try:
        return body_model(body.get("model")).model_validate(body)
    except ValidationError as exc:
        errors = field_errors_from_pydantic(list(exc.errors()))
        raise ValidationFailed(validation_message(errors), errors) from None


def _video(view: JobView) -> dict[str, Any] | None:
    artifact = view.job.artifact
    if artifact is None or view.video_url is None:
        return None
    return {
        "url": view.video_url,
        "content_type": "video/mp4",
        "file_name": artifact.file_name,
        "file_size": artifact.file_size,
        "duration": artifact.duration,
        "width": artifact.width,
        "height": artifact.height,
        "fps": artifact.fps,
        "has_audio": artifact.has_audio,
    }


def _timestamp(value: float | None) -> int | None:
    return None if value is None else int(value)


def render_generation(view: JobView) -> dict[str, Any]:
    job = view.job
    body: dict[str, Any] = {
        "id": job.id,
        "status": WIRE_STATUS[job.status],
        "progress": round(job.progress, 1),
    }
    if view.queue_position is not None:
        body["queue_position"] = view.queue_position
    if (video := _video(view)) is not None:
        body["video"] = video
    if job.status in (JobStatus.FAILED, JobStatus.CANCELED):
        body["error"] = {
            "name": job.error_name or "GenerationFailed",
            "message": job.error_message or "",
        }
    body["created_at"] = _timestamp(job.created_at)
    body["started_at"] = _timestamp(job.started_at)
    body["completed_at"] = _timestamp(job.completed_at)
    body["meta"] = {
        **job.meta,
        "model": job.request.model,
        "seed": job.request.seed,
        "stage": job.stage,
        "attempts": job.attempts,
    }
    return body
