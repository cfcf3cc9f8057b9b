"""The pieces of one generation, each timed on its own: prompt, denoising stages, decoders.

The decoders repeat what `LTX2Pipeline.__call__` does after its denoising loop (diffusers 0.42.1),
so that a generation can stop at latents, upsample and refine them, and decode once at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kinema.catalog.plan import GenerationPlan, StagePlan
from kinema.catalog.runner import StepCallback


@dataclass(frozen=True)
class PromptEmbeds:
    prompt_embeds: torch.Tensor
    prompt_attention_mask: torch.Tensor
    negative_prompt_embeds: torch.Tensor | None
    negative_prompt_attention_mask: torch.Tensor | None

    def for_stage(self, stage: StagePlan) -> dict[str, Any]:
        embeds: dict[str, torch.Tensor | None] = {
            "prompt_embeds": self.prompt_embeds,
            "prompt_attention_mask": self.prompt_attention_mask,
        }
        if stage.uses_cfg:
            embeds["negative_prompt_embeds"] = self.negative_prompt_embeds
            embeds["negative_prompt_attention_mask"] = self.negative_prompt_attention_mask
        return embeds


def encode_prompt(pipeline: Any, plan: GenerationPlan) -> PromptEmbeds:
    """Encode once for every stage; the negative prompt only where some stage runs CFG."""
    cfg = any(stage.uses_cfg for stage in plan.stages)
    positive, mask, negative, negative_mask = pipeline.encode_prompt(
        prompt=plan.prompt,
        negative_prompt=plan.negative_prompt if cfg else None,
        do_classifier_free_guidance=cfg,
        max_sequence_length=plan.max_sequence_length,
        device=pipeline._execution_device,
    )
    return PromptEmbeds(positive, mask, negative, negative_mask)


def stage_args(
    plan: GenerationPlan, stage: StagePlan, embeds: PromptEmbeds, extra: dict[str, Any]
) -> dict[str, Any]:
    """Every argument of one stage's pipeline call except latents, generator and callback."""
    return {
        **embeds.for_stage(stage),
        "width": stage.width,
        "height": stage.height,
        "num_frames": plan.num_frames,
        "frame_rate": plan.fps,
        "num_inference_steps": stage.num_inference_steps,
        "sigmas": list(stage.sigmas) if stage.sigmas else None,
        "guidance_scale": stage.guidance_scale,
        "audio_guidance_scale": stage.audio_guidance_scale,
        "noise_scale": stage.noise_scale,
        "max_sequence_length": plan.max_sequence_length,
        "output_type": "latent",
        "return_dict": False,
        **extra,
        **stage.guidance_args(),
    }


def condition_args(plan: GenerationPlan) -> dict[str, Any]:
    """The condition pipeline's `conditions`: each input's frames at its latent index (resized
    and center-cropped by the pipeline to the stage's size); nothing for a text-only plan."""
    if not plan.conditions:
        return {}
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

    conditions = []
    for condition in plan.conditions:
        assert condition.pixels is not None, "the worker reads each condition's pixels"
        conditions.append(
            LTX2VideoCondition(
                frames=condition.pixels, index=condition.latent_index, strength=condition.strength
            )
        )
    return {"conditions": conditions}


def decode_video(
    pipeline: Any,
    latents: torch.Tensor,
    generator: torch.Generator,
    decode_timestep: float = 0.0,
    decode_noise_scale: float | None = None,
) -> np.ndarray:
    """Denormalized (B, C, F, H, W) video latents → (F, H, W, 3) uint8, as LTX2Pipeline decodes."""
    vae = pipeline.vae
    timestep = None
    if vae.config.timestep_conditioning:
        mean, std, scale = vae.latents_mean, vae.latents_std, vae.config.scaling_factor
        normalized = pipeline._normalize_latents(latents, mean, std, scale)
        noise = _randn(normalized, generator)
        noise_scale = decode_timestep if decode_noise_scale is None else decode_noise_scale
        normalized = (1 - noise_scale) * normalized + noise_scale * noise
        latents = pipeline._denormalize_latents(normalized, mean, std, scale)
        timestep = torch.tensor([decode_timestep], device=latents.device, dtype=latents.dtype)
    video = vae.decode(latents.to(vae.dtype), timestep, return_dict=False)[0]
    frames = pipeline.video_processor.postprocess_video(video, output_type="np")[0]
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def decode_audio(pipeline: Any, latents: torch.Tensor) -> np.ndarray:
    """Denormalized (B, C, L, M) audio latents → mel → vocoder → (channels, samples) float32."""
    mel = pipeline.audio_vae.decode(latents.to(pipeline.audio_vae.dtype), return_dict=False)[0]
    waveform = pipeline.vocoder(mel)[0].float().cpu().numpy()
    if waveform.ndim == 1:
        waveform = waveform[np.newaxis, :]
    return np.clip(waveform, -1.0, 1.0).astype(np.float32)


def _randn(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor(like.shape, generator=generator, device=like.device, dtype=like.dtype)


class Progress:
    """`callback_on_step_end` for every stage: one step count across stages, and cancellation."""

    def __init__(self, total: int, on_step: StepCallback, is_canceled: Callable[[], bool]) -> None:
        self.total = total
        self.on_step = on_step
        self.is_canceled = is_canceled
        self.done = 0
        self.canceled = False

    def __call__(
        self, pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        self.done += 1
        self.on_step(self.done, self.total)
        if self.is_canceled():
            self.canceled = True
            pipeline._interrupt = True  # the pipeline skips its remaining steps
        return {}


class Timer:
    """Seconds per named part of a generation; synchronizes CUDA so GPU work lands where it ran."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
