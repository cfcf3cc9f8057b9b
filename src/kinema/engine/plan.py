"""From a validated request and a model spec to every argument the pipeline gets (DESIGN §3).

Nothing else in kinema decides sizes, frame counts or guidance. Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kinema.domain import GenerationRequest
from kinema.engine.registry import ModelSpec


@dataclass(frozen=True)
class GenerationPlan:
    model: str
    prompt: str
    negative_prompt: str | None
    width: int  # generation size: a multiple of the model's size rule
    height: int
    output_width: int  # what the encoder crops to (centered)
    output_height: int
    num_frames: int  # what the model generates (its frame rule)
    output_frames: int  # what the encoder keeps: duration x fps, so a 5 s request lasts 5 s
    fps: float
    num_inference_steps: int
    guidance_scale: float
    seed: int
    generate_audio: bool
    max_sequence_length: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def duration(self) -> float:
        return self.output_frames / self.fps


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


def plan_generation(request: GenerationRequest, spec: ModelSpec, seed: int) -> GenerationPlan:
    output_width, output_height = spec.output_sizes[request.aspect_ratio]
    num_frames = snap_frames(request.duration, spec.fps, spec.frame_multiple)
    notes: list[str] = []
    negative_prompt = request.negative_prompt
    guidance = guidance_for(request.cfg_scale, spec)
    if not spec.uses_cfg:
        guidance = 1.0
        if negative_prompt:
            notes.append(
                "negative_prompt ignored: this model runs without classifier-free guidance"
            )
            negative_prompt = None
    if request.enhance_prompt:
        notes.append("enhance_prompt ignored: this deployment has no prompt enhancer")
    return GenerationPlan(
        model=spec.id,
        prompt=request.prompt,
        negative_prompt=negative_prompt,
        width=round_up(output_width, spec.size_multiple),
        height=round_up(output_height, spec.size_multiple),
        output_width=output_width,
        output_height=output_height,
        num_frames=num_frames,
        output_frames=min(num_frames, round(request.duration * spec.fps)),
        fps=spec.fps,
        num_inference_steps=spec.num_inference_steps,
        guidance_scale=guidance,
        seed=seed,
        generate_audio=request.generate_audio and spec.has_audio,
        max_sequence_length=spec.max_sequence_length,
        notes=tuple(notes),
    )
