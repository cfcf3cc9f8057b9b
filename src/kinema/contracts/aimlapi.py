"""The AI/ML API v2 video contract's bodies."""

from __future__ import annotations

import math
import unicodedata
from typing import Annotated, Any, Literal

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

from kinema.contracts.fields import field_errors_from_pydantic, validation_message
from kinema.domain import GenerationRequest, JobStatus
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


def has_visible_text(text: str) -> bool:
    return any(
        ch not in INVISIBLE_LETTERS and unicodedata.category(ch) not in INVISIBLE_CATEGORIES
        for ch in text
    )


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a number, not {value!r}")
    return value


class CreateGenerationBody(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model: StrictStr = Field(min_length=1)
    prompt: Annotated[str, BeforeValidator(_prompt)]
    aspect_ratio: Literal["16:9", "9:16", "1:1"] = "16:9"
    duration: Annotated[Literal[5, 10], BeforeValidator(_duration)] = 5
    negative_prompt: Annotated[StrictStr, Field(max_length=PROMPT_LIMIT)] | None = None
    cfg_scale: Annotated[float, Field(strict=True, ge=0.0, le=1.0), BeforeValidator(_finite)] = 0.5
    generate_audio: StrictBool = True
    seed: Annotated[int, Field(strict=True, ge=0, le=MAX_SEED)] | None = None
    enhance_prompt: StrictBool = False
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

    def to_request(self) -> GenerationRequest:
        return GenerationRequest(
            model=self.model,
            prompt=self.prompt,
            aspect_ratio=self.aspect_ratio,
            duration=self.duration,
            negative_prompt=self.negative_prompt or None,
            cfg_scale=float(self.cfg_scale),
            generate_audio=self.generate_audio,
            seed=self.seed,
            enhance_prompt=self.enhance_prompt,
        )


def parse_create_body(body: dict[str, Any]) -> CreateGenerationBody:
    try:
        return CreateGenerationBody.model_validate(body)
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
