"""Pure data shared by every layer: job states, requests, jobs and clips."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np


class JobStatus(StrEnum):
    """A job's internal state. The wire contract folds these into its own four strings."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


@dataclass(frozen=True)
class Condition:
    """Frames the output must show: an input image (or a clip's frames) at an output frame."""

    key: str  # the input's key in the artifact store
    frame: int = 0  # the output frame it lands on; -1: the last frame
    strength: float = 1.0
    kind: str = "image"  # "image", or "video": a clip's frames, from `frame` on
    clip_frames: int = 0  # of a video: how many of its last frames (0: all of them)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Condition:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


@dataclass(frozen=True)
class LoraChoice:
    """A LoRA the deployment offers (by its file's name), at a scale, for one request."""

    name: str
    scale: float = 1.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoraChoice:
        return cls(str(data["name"]), float(data.get("scale", 1.0)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GenerationRequest:
    """A validated request, in no contract's terms, already resolved to a served model id.

    The output size is `width` x `height`, or, where those are None, the model's native size for
    `aspect_ratio`; `duration` is in seconds at `fps` frames per second (None: the model's rate).
    """

    model: str
    prompt: str
    aspect_ratio: str = "16:9"
    duration: float = 5
    negative_prompt: str | None = None
    cfg_scale: float = 0.5
    generate_audio: bool | None = None  # None: the model's own (sound where it makes sound)
    seed: int | None = None
    enhance_prompt: bool = False
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    conditions: tuple[Condition, ...] = ()
    loras: tuple[LoraChoice, ...] = ()
    # A clip (its artifact key) the output continues: the output is that clip, then `duration`
    # more seconds that follow on from its last frames (conditioned on them).
    continues: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRequest:
        fields = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        fields["conditions"] = tuple(Condition.from_dict(c) for c in data.get("conditions", ()))
        fields["loras"] = tuple(LoraChoice.from_dict(lora) for lora in data.get("loras", ()))
        return cls(**fields)

    @property
    def input_keys(self) -> list[str]:
        return [condition.key for condition in self.conditions]


@dataclass(frozen=True)
class VideoArtifact:
    """What the worker produced and stored for a completed job."""

    key: str
    file_name: str
    file_size: int
    duration: float
    width: int
    height: int
    fps: float
    has_audio: bool
    thumbnail_key: str | None = None  # a JPEG still of the clip (absent on older artifacts)
    spritesheet_key: str | None = None  # a JPEG grid of 25 frames across the clip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoArtifact:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})

    @property
    def keys(self) -> list[str]:
        """Every stored object this artifact consists of."""
        extras = [self.thumbnail_key, self.spritesheet_key]
        return [self.key, *(key for key in extras if key)]


@dataclass(frozen=True)
class Job:
    id: str
    owner: str
    request: GenerationRequest
    status: JobStatus
    created_at: float
    progress: float = 0.0
    stage: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    attempts: int = 0
    error_name: str | None = None
    error_message: str | None = None
    artifact: VideoArtifact | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False
    callback_url: str | None = None  # where the final poll body is POSTed (a webhook)


@dataclass(frozen=True)
class Lease:
    """A worker's claim on a job. Only the holder of the current token may finish the job."""

    job: Job
    token: str
    worker_id: str
    expires_at: float


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    created_at: float
    revoked: bool = False
    webhook_secret: str | None = None  # Standard Webhooks signing secret ("whsec_…")


@dataclass(frozen=True)
class Clip:
    """A generated clip: video frames and, optionally, its sound track."""

    frames: np.ndarray  # uint8, (frames, height, width, 3)
    fps: float
    audio: np.ndarray | None = None  # float32, (channels, samples), in [-1, 1]
    sample_rate: int = 0
    prompt_used: str | None = None  # set when the model rewrote the prompt
