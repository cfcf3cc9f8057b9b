"""From a validated request and a model spec to every argument the pipeline gets.

Nothing else in kinema decides sizes, frame counts, schedules or guidance. Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kinema.catalog.registry import ModelSpec, StageSpec
from kinema.domain import GenerationRequest

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

    @property
    def duration(self) -> float:
        return self.output_frames / self.fps

    @property
    def total_steps(self) -> int:
        return sum(stage.num_inference_steps for stage in self.stages)


def round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


def snap_frames(duration: float, fps: float, frame_multiple: int) -> int:
    """`duration * fps + 1`, snapped to the nearest count of the form k·multiple + 1."""
    wanted = round(duration * fps) + 1
    steps = max(1, round((wanted - 1) / frame_multiple))
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
    if request.enhance_prompt:
        notes.append("enhance_prompt ignored: this deployment has no prompt enhancer")
    return notes


def plan_generation(
    request: GenerationRequest, spec: ModelSpec, seed: int, first_stage_steps: int | None = None
) -> GenerationPlan:
    """The whole pipeline call. `first_stage_steps` overrides a spaced (not fixed) schedule."""
    output_width, output_height = spec.output_sizes[request.aspect_ratio]
    size = (round_up(output_width, spec.size_multiple), round_up(output_height, spec.size_multiple))
    num_frames = snap_frames(request.duration, spec.fps, spec.frame_multiple)
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
        output_frames=min(num_frames, round(request.duration * spec.fps)),
        fps=spec.fps,
        seed=seed,
        generate_audio=request.generate_audio and spec.has_audio,
        max_sequence_length=spec.max_sequence_length,
        stages=stages,
        notes=tuple(_notes(request, spec)),
    )
