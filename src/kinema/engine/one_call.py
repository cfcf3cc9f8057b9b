"""Models whose pipeline makes the whole clip in one call, decoding included (Wan, Kandinsky 6):
the runner the worker drives for them, and their loading. Each family says how a plan becomes
its pipeline's arguments and how the pipeline's output becomes a clip."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import PIL.Image
import torch

from kinema.catalog.plan import GenerationPlan, plan_generation
from kinema.catalog.registry import ModelSpec
from kinema.config import Settings
from kinema.domain import Clip, GenerationRequest
from kinema.engine import components, loras
from kinema.engine.loras import RequestLoras
from kinema.engine.stages import Progress, StepCallback, Timer
from kinema.errors import GenerationCanceled, ModelUnavailable

logger = logging.getLogger("kinema.engine")

R = TypeVar("R", bound="OneCallRunner")


class OneCallRunner:
    """One loaded model, kept in memory between jobs (the worker's ClipRunner)."""

    def __init__(
        self,
        spec: ModelSpec,
        pipeline: Any,
        device: torch.device,
        lora_dir: Path | None = None,
        loras_kept: int = 8,
    ) -> None:
        self.spec = spec
        self.pipeline = pipeline
        self.device = device
        self.request_loras = RequestLoras(pipeline, spec, lora_dir, loras_kept)
        self.features: dict[str, str] = {"attention": "sdpa", "compile": "off"}
        self.last_timings: dict[str, float] = {}

    def generate(
        self, plan: GenerationPlan, on_step: StepCallback, is_canceled: Callable[[], bool]
    ) -> Clip:
        if is_canceled():
            raise GenerationCanceled("canceled before generation started")
        timer = Timer(self.device)
        progress = Progress(plan.total_steps, on_step, is_canceled)
        pipeline = self.pipeline_for(plan)
        adapters = self.request_loras.adapters(plan.loras)
        loras.activate(pipeline, adapters, bool(self.request_loras.loaded))
        try:
            with torch.inference_mode(), timer("stage1"):
                output = pipeline(**self.call_args(plan, progress))
        finally:
            self.last_timings = {name: round(value, 4) for name, value in timer.seconds.items()}
        if progress.canceled or progress.is_canceled():
            raise GenerationCanceled("canceled while generating; the output was discarded")
        return self.clip(plan, output)

    def pipeline_for(self, plan: GenerationPlan) -> Any:
        return self.pipeline

    def call_args(self, plan: GenerationPlan, progress: Progress) -> dict[str, Any]:
        """The plan's one stage in the pipeline's terms (the plan decided every value)."""
        (stage,) = plan.stages
        args: dict[str, Any] = {
            "prompt": plan.prompt,
            "negative_prompt": plan.negative_prompt if stage.uses_cfg else None,
            "height": stage.height,
            "width": stage.width,
            "num_frames": plan.num_frames,
            "num_inference_steps": stage.num_inference_steps,
            "guidance_scale": stage.guidance_scale,
            "max_sequence_length": plan.max_sequence_length,
            "generator": torch.Generator(device=self.device).manual_seed(plan.seed),
            "output_type": "np",
            "callback_on_step_end": progress,
        }
        if plan.conditions:
            args["image"] = first_frame(plan)
        return args

    def clip(self, plan: GenerationPlan, output: Any) -> Clip:
        return Clip(frames=uint8_frames(output.frames[0]), fps=plan.fps)

    def warm_up(self, seconds: float = 1.0) -> None:
        aspect_ratio = next(iter(self.spec.output_sizes))
        request = GenerationRequest(
            model=self.spec.id, prompt="warm-up", aspect_ratio=aspect_ratio, duration=seconds
        )
        self.generate(plan_generation(request, self.spec, 0), lambda done, total: None, _never)


def _never() -> bool:
    return False


def uint8_frames(frames: Any) -> np.ndarray:
    """A pipeline's [0, 1] float frames (frames, height, width, 3) as 8-bit pixels."""
    return np.clip(np.round(np.asarray(frames) * 255.0), 0, 255).astype(np.uint8)


def first_frame(plan: GenerationPlan) -> PIL.Image.Image:
    """The one image a first-frame model takes, as a PIL image (the plan refuses others)."""
    (condition,) = plan.conditions
    if condition.kind != "image" or condition.latent_index != 0 or condition.pixels is None:
        raise ModelUnavailable(f"model {plan.model!r} takes a first frame only")
    return PIL.Image.fromarray(condition.pixels[0])


def load_one_call(
    runner: type[R],
    pipeline_class: Any,
    spec: ModelSpec,
    settings: Settings,
) -> R:
    """`spec`'s weights in `pipeline_class` on the configured device (a tiny twin, built under
    the models dir first, where the catalog names no weights)."""
    device = components.resolve_device(settings.device)
    dtype = components.resolve_dtype(settings.dtype, device)
    location = components.resolve_weights(spec, settings)
    components.quiet_libraries()
    try:
        pipeline = pipeline_class.from_pretrained(location, dtype=dtype)
    except Exception as exc:
        raise ModelUnavailable(
            f"cannot load model {spec.id!r} from {location!r} ({type(exc).__name__}: {exc}); "
            f"set {spec.weights_setting} to a local directory or a reachable Hub id"
        ) from exc
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    logger.info("loaded %s from %s on %s (%s)", spec.id, location, device, dtype)
    return runner(spec, pipeline, device, settings.lora_dir, settings.loras_kept)
