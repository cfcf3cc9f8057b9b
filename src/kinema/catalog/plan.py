"""From a validated request and a model spec to every argument the pipeline gets.

Nothing else in kinema decides sizes, frame counts, schedules or guidance. Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kinema.catalog.registry import ModelSpec, StageSpec
from kinema.domain import Condition, GenerationRequest, LoraChoice
from kinema.errors import FieldError, ValidationFailed

# A stage without classifier-free guidance runs the plain (distilled) denoiser: no spatio-temporal
# guidance and no modality isolation either (diffusers' defaults follow LTX-2.5, where both add a
# transformer pass per step).
PLAIN_DENOISER = {
    "stg_scale": 0.0,
    "audio_stg_scale": 0.0,
    "modality_scale": 1.0,
    "audio_modality_scale": 1.0,
}


@dataclass(frozen=True)
class StagePlan:
    """One denoising pass of the pipeline, at its own size."""

    width: int
    height: int
    num_inference_steps: int
    sigmas: tuple[float, ...] | None
    uses_cfg: bool  # classifier-free guidance: a negative pass per step
    guidance_scale: float  # 1.0 = no classifier-free guidance
    audio_guidance_scale: float
    noise_scale: float
    distilled_lora: bool
    # The other guidance of the pipeline call; None: the pipeline's default.
    stg_scale: float | None = None
    audio_stg_scale: float | None = None
    modality_scale: float | None = None
    audio_modality_scale: float | None = None

    def guidance_args(self) -> dict[str, float]:
        """The spatio-temporal and modality scales the pipeline call gets (those not left to
        its defaults)."""
        scales = {
            "stg_scale": self.stg_scale,
            "audio_stg_scale": self.audio_stg_scale,
            "modality_scale": self.modality_scale,
            "audio_modality_scale": self.audio_modality_scale,
        }
        return {name: value for name, value in scales.items() if value is not None}


@dataclass(frozen=True)
class ConditionPlan:
    """An input the pipeline conditions on, at a generated frame."""

    key: str  # the input's key in the artifact store
    kind: str  # "image" or "video"
    latent_index: int  # the latent frame it lands on: 0, or frames (k-1)·multiple+1 .. k·multiple
    strength: float
    clip_frames: int = 0  # of a video: how many of its last frames (0: all)
    # The input's RGB frames, (frames, height, width, 3) uint8, read by the worker before it runs
    # the plan (the engine never reads the artifact store).
    pixels: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class GenerationPlan:
    model: str
    prompt: str
    negative_prompt: str | None
    width: int  # generation size (the last stage's): a multiple of the model's size rule
    height: int
    output_width: int  # what the encoder crops to (centered)
    output_height: int
    num_frames: int  # what the model generates (its frame rule)
    output_frames: int  # what the encoder keeps: duration x fps, so a 5 s request lasts 5 s
    fps: float
    seed: int
    generate_audio: bool
    max_sequence_length: int
    stages: tuple[StagePlan, ...]  # a second stage follows 2x latent upsampling
    notes: tuple[str, ...] = field(default_factory=tuple)
    conditions: tuple[ConditionPlan, ...] = ()
    # A continuation: the clip it follows (played first), and how many generated frames repeat
    # that clip's end (the conditioning frames; the new part starts after them).
    continues: str | None = None
    overlap_frames: int = 0
    enhance_prompt: bool = False  # the model rewrites `prompt` first (see ModelRunner)
    enhanced_prompt_tokens: int | None = None  # at most; None: the pipeline's own limit
    loras: tuple[LoraChoice, ...] = ()  # active on every stage, over the model's own weights

    @property
    def duration(self) -> float:
        return self.output_frames / self.fps

    @property
    def total_steps(self) -> int:
        return sum(stage.num_inference_steps for stage in self.stages)


def round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


def snap_frames(duration: float, fps: float, frame_multiple: int) -> int:
    """The fewest frames of the form k·multiple + 1 that hold `duration * fps` (so a clip never
    comes out shorter than asked)."""
    wanted = round(duration * fps) + 1
    steps = max(1, math.ceil((wanted - 1) / frame_multiple))
    return steps * frame_multiple + 1


def guidance_for(cfg_scale: float, spec: ModelSpec) -> float:
    """Map cfg_scale 0..1 linearly onto the spec's guidance range; 0.5 lands on its default."""
    low, high = spec.guidance_range
    if cfg_scale <= 0.5:
        return low + (spec.guidance_default - low) * (cfg_scale / 0.5)
    return spec.guidance_default + (high - spec.guidance_default) * ((cfg_scale - 0.5) / 0.5)


def _stage_plan(
    stage: StageSpec, spec: ModelSpec, cfg_scale: float, size: tuple[int, int], steps: int | None
) -> StagePlan:
    guidance = guidance_for(cfg_scale, spec) if stage.uses_cfg else 1.0
    audio_guidance = guidance * spec.audio_guidance_default / spec.guidance_default
    audio_guidance = audio_guidance if stage.uses_cfg else 1.0
    # The pipeline's own rule: CFG runs where either modality's guidance exceeds 1.
    cfg = guidance > 1.0 or audio_guidance > 1.0
    other: dict[str, float | None] = (
        {"stg_scale": spec.stg_scale, "audio_stg_scale": spec.audio_stg_scale}
        if cfg
        else dict(PLAIN_DENOISER)
    )
    return StagePlan(
        width=round(size[0] * stage.scale),
        height=round(size[1] * stage.scale),
        num_inference_steps=steps if steps and not stage.sigmas else stage.num_steps,
        sigmas=stage.sigmas,
        uses_cfg=cfg,
        guidance_scale=guidance,
        audio_guidance_scale=audio_guidance,
        noise_scale=stage.noise_scale,
        distilled_lora=stage.distilled_lora,
        **other,
    )


def _notes(request: GenerationRequest, spec: ModelSpec) -> list[str]:
    notes = []
    if request.negative_prompt and not spec.uses_cfg:
        notes.append("negative_prompt ignored: this model runs without classifier-free guidance")
    if request.enhance_prompt and not spec.enhances_prompts:
        notes.append(f"enhance_prompt ignored: model {spec.id!r} has no prompt enhancer")
    return notes


def output_size(request: GenerationRequest, spec: ModelSpec) -> tuple[int, int]:
    if request.width is not None and request.height is not None:
        return request.width, request.height
    return spec.output_sizes[request.aspect_ratio]


def output_fps(request: GenerationRequest, spec: ModelSpec) -> float:
    return spec.fps if request.fps is None else request.fps


def check_request(
    request: GenerationRequest, spec: ModelSpec, max_pixels: int | None = None
) -> None:
    """Refuse what `spec` cannot make, or what is larger than `max_pixels` a frame (the cap a
    deployment sets for its GPUs' memory), naming the request's field and what would work. The
    fields are the domain's (`size`, `duration`, `fps`, `generate_audio`, `conditions`): each
    contract renames them to its own."""
    errors = [
        error
        for error in (
            _size_error(request, spec) or _deployment_size_error(request, spec, max_pixels),
            _duration_error(request, spec),
            _fps_error(request, spec),
            _audio_error(request, spec),
            _conditions_error(request, spec),
        )
        if error is not None
    ]
    if errors:
        details = "; ".join(f"{e.field}: {e.message}" for e in errors)
        raise ValidationFailed(f"Body validation error: {details}", errors)


def _size_error(request: GenerationRequest, spec: ModelSpec) -> FieldError | None:
    if request.aspect_ratio not in spec.output_sizes and request.width is None:
        ratios = ", ".join(spec.output_sizes)
        return FieldError("aspect_ratio", f"{spec.id} makes {ratios}")
    width, height = output_size(request, spec)
    limits = (
        f"{spec.id} makes even sizes with sides of {spec.min_side}..{spec.max_side} and at "
        f"most {spec.max_pixels:,} pixels"
    )
    if width % 2 or height % 2:
        return FieldError("size", f"{width}x{height} is not even; {limits}")
    if min(width, height) < spec.min_side:
        return FieldError("size", f"{width}x{height} is too small; {limits}")
    if max(width, height) > spec.max_side or width * height > spec.max_pixels:
        return FieldError("size", f"{width}x{height} is too large; {limits}")
    return None


def _deployment_size_error(
    request: GenerationRequest, spec: ModelSpec, max_pixels: int | None
) -> FieldError | None:
    width, height = output_size(request, spec)
    if max_pixels is None or width * height <= max_pixels:
        return None
    scale = math.sqrt(max_pixels / (width * height))
    fits = [max(spec.min_side, 2 * math.floor(side * scale / 2 + 1e-9)) for side in (width, height)]
    return FieldError(
        "size",
        f"{width}x{height} is more than this deployment makes: at most {max_pixels:,} pixels a "
        f"frame (KINEMA_MAX_OUTPUT_PIXELS, set for the memory of its GPUs); "
        f"{fits[0]}x{fits[1]} fits",
    )


def _duration_error(request: GenerationRequest, spec: ModelSpec) -> FieldError | None:
    if spec.min_seconds <= request.duration <= spec.max_seconds:
        return None
    allowed = f"{spec.min_seconds:g}..{spec.max_seconds:g}"
    return FieldError("duration", f"{request.duration:g} s: {spec.id} makes {allowed} s")


def _fps_error(request: GenerationRequest, spec: ModelSpec) -> FieldError | None:
    if request.fps is None or request.fps in spec.frame_rates:
        return None
    rates = ", ".join(f"{rate:g}" for rate in spec.frame_rates)
    return FieldError("fps", f"{request.fps:g}: {spec.id} makes {rates} frames per second")


def _audio_error(request: GenerationRequest, spec: ModelSpec) -> FieldError | None:
    if request.generate_audio is True and not spec.has_audio:
        return FieldError("generate_audio", f"{spec.id} makes video without sound; send false")
    return None


def _conditions_error(request: GenerationRequest, spec: ModelSpec) -> FieldError | None:
    for condition in request.conditions:
        field = _condition_field(condition)
        if not spec.condition_pipeline:
            return FieldError(field, f"{spec.id} makes video from text only")
        if spec.first_frame_only and (condition.kind, condition.frame) != ("image", 0):
            what = "a clip to remix or extend" if condition.kind == "video" else "other frames"
            return FieldError(field, f"{spec.id} takes a first frame only, not {what}")
        if not 0.0 <= condition.strength <= 1.0:
            return FieldError(field, f"strength {condition.strength:g} is not in 0..1")
    return None


def _condition_field(condition: Condition) -> str:
    """The contract field a condition comes from: the source clip of a remix or an extension,
    the first frame, the last, or (kinema's own) a frame in between."""
    if condition.kind == "video":
        return "video"
    return {0: "image_url", -1: "tail_image_url"}.get(condition.frame, "conditions")


def _latent_index(frame: int, num_frames: int, frame_multiple: int) -> int:
    """The latent frame an output frame falls in: the pipeline conditions whole latent frames
    (0 alone, then `frame_multiple` frames each); -1 and anything past the end: the last."""
    last = (num_frames - 1) // frame_multiple
    if frame < 0 or frame >= num_frames - 1:
        return last
    return math.ceil(frame / frame_multiple)


def _condition_plans(
    request: GenerationRequest, num_frames: int, frame_multiple: int
) -> tuple[ConditionPlan, ...]:
    return tuple(
        ConditionPlan(
            key=condition.key,
            kind=condition.kind,
            latent_index=_latent_index(condition.frame, num_frames, frame_multiple),
            strength=condition.strength,
            clip_frames=condition.clip_frames,
        )
        for condition in request.conditions
    )


def plan_generation(
    request: GenerationRequest, spec: ModelSpec, seed: int, first_stage_steps: int | None = None
) -> GenerationPlan:
    """The whole pipeline call. `first_stage_steps` overrides a spaced (not fixed) schedule."""
    check_request(request, spec)
    output_width, output_height = output_size(request, spec)
    size = (round_up(output_width, spec.size_multiple), round_up(output_height, spec.size_multiple))
    fps = output_fps(request, spec)
    overlap = _overlap_frames(request)
    wanted = overlap + round(request.duration * fps)
    num_frames = snap_frames(wanted / fps, fps, spec.frame_multiple)
    conditions = _condition_plans(request, num_frames, spec.frame_multiple)
    # A clip conditioned on its last frame keeps that frame (the one past `duration`).
    last_latent = (num_frames - 1) // spec.frame_multiple
    ends_on_a_condition = any(c.latent_index == last_latent > 0 for c in conditions)
    output_frames = num_frames if ends_on_a_condition else wanted
    stages = tuple(
        _stage_plan(stage, spec, request.cfg_scale, size, first_stage_steps if i == 0 else None)
        for i, stage in enumerate(spec.stages)
    )
    return GenerationPlan(
        model=spec.id,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt if spec.uses_cfg else None,
        width=size[0],
        height=size[1],
        output_width=output_width,
        output_height=output_height,
        num_frames=num_frames,
        output_frames=min(num_frames, output_frames),
        fps=fps,
        seed=seed,
        generate_audio=spec.has_audio and request.generate_audio is not False,
        max_sequence_length=spec.max_sequence_length,
        stages=stages,
        notes=tuple(_notes(request, spec)),
        conditions=conditions,
        continues=request.continues,
        overlap_frames=overlap,
        enhance_prompt=request.enhance_prompt and spec.enhances_prompts,
        enhanced_prompt_tokens=spec.enhanced_prompt_tokens,
        loras=request.loras,
    )


def _overlap_frames(request: GenerationRequest) -> int:
    """A continuation generates the frames it is conditioned on again before its new ones."""
    if request.continues is None:
        return 0
    return next((c.clip_frames for c in request.conditions if c.key == request.continues), 0)
