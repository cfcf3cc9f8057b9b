"""The engine: one loaded model and the recipe that runs a generation plan through it.

The recipe: encode the prompt once → stage 1 at its own size to latents →
2x latent upsampling → refine stage(s) → decode video and audio. Every part is timed on its own
(`ModelRunner.last_timings`). Loading applies the speed features of `kinema.engine.speed`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import PIL.Image
import torch
from diffusers.pipelines.ltx2.utils import (
    LTX2_5_I2V_DEFAULT_SYSTEM_PROMPT as I2V_SYSTEM_PROMPT,
)
from diffusers.pipelines.ltx2.utils import (
    LTX2_5_T2V_DEFAULT_SYSTEM_PROMPT as T2V_SYSTEM_PROMPT,
)

from kinema.catalog.plan import GenerationPlan, StagePlan, plan_generation
from kinema.catalog.registry import ModelSpec
from kinema.config import Settings
from kinema.domain import Clip, GenerationRequest
from kinema.engine import components, loras, speed
from kinema.engine.components import LORA_ADAPTER, Source
from kinema.engine.loras import RequestLoras
from kinema.engine.stages import (
    Progress,
    PromptEmbeds,
    StepCallback,
    Timer,
    condition_args,
    decode_audio,
    decode_video,
    encode_prompt,
    stage_args,
)
from kinema.errors import GenerationCanceled, ModelUnavailable

__all__ = ["ModelRunner", "StepCallback", "engine_from_components", "load_engine"]

logger = logging.getLogger("kinema.engine")


class ModelRunner:
    """One loaded model, kept in memory between jobs. Build it with `load_engine` or
    `engine_from_components`, which apply the speed features first."""

    def __init__(
        self,
        spec: ModelSpec,
        pipeline: Any,
        upsampler: Any | None,
        device: torch.device,
        settings: Settings,
        features: dict[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.pipeline = pipeline
        self.upsampler = upsampler
        self.device = device
        self.settings = settings
        # What each speed feature resolved to, e.g. {"compile": "off", "lora": "fused"}.
        self.features = features or {}
        self.lora = self.features.get("lora", "none")  # none | adapter | fused
        self.release_text_encoder = self.features.get("release_text_encoder") == "on"
        self.last_timings: dict[str, float] = {}
        self._schedulers = _stage_schedulers(pipeline.scheduler, spec.spaced_scheduler)
        self._conditioned: Any | None = None  # the condition pipeline, built on first use
        self.request_loras = RequestLoras(pipeline, spec, settings.lora_dir, settings.loras_kept)

    @property
    def sample_rate(self) -> int:
        return int(self.pipeline.vocoder.config.output_sampling_rate)

    def generate(
        self, plan: GenerationPlan, on_step: StepCallback, is_canceled: Callable[[], bool]
    ) -> Clip:
        """Run `plan`; on cancel, stop at the next step, skip what is left and raise."""
        if is_canceled():
            raise GenerationCanceled("canceled before generation started")
        if len(plan.stages) > 1 and self.upsampler is None:
            raise ModelUnavailable(f"model {self.spec.id!r} was loaded without a latent upsampler")
        timer = Timer(self.device)
        progress = Progress(plan.total_steps, on_step, is_canceled)
        try:
            with torch.inference_mode():
                return self._run(plan, progress, timer)
        finally:
            self.last_timings = _timings(plan, timer.seconds)
            self.pipeline.maybe_free_model_hooks()

    def _run(self, plan: GenerationPlan, progress: Progress, timer: Timer) -> Clip:
        generator = torch.Generator(device=self.device).manual_seed(plan.seed)
        # 1. The prompt (rewritten by the model first when asked), encoded once for every stage.
        with self._text_encoder_on_device():
            if plan.enhance_prompt:
                with timer("prompt_enhance"):
                    plan = replace(plan, prompt=self._enhanced_prompt(plan))
            with timer("text_encode"):
                embeds = encode_prompt(self.pipeline, plan)
        # 2. Stage 1 at its own size, then (2x upsampled) refine stages; latents in between.
        video: torch.Tensor | None = None
        audio: torch.Tensor | None = None
        for index, stage in enumerate(plan.stages):
            if index:
                assert video is not None  # stage 1 made it
                with timer("upsample"):
                    video = self.upsample(video)
            with timer("stage1" if index == 0 else "refine"):
                video, audio = self._denoise(
                    plan, stage, embeds, (video, audio), generator, progress
                )
            if progress.canceled or progress.is_canceled():  # at a step, or since the last one
                raise GenerationCanceled("canceled while generating; the output was discarded")
        # 3. Decode.
        assert video is not None  # a plan has at least one stage
        with timer("video_decode"):
            speed.set_vae_tiling(self.pipeline.vae, self._tiled(plan))
            frames = decode_video(self.pipeline, video, generator)
        prompt_used = plan.prompt if plan.enhance_prompt else None
        if not plan.generate_audio:
            return Clip(frames=frames, fps=plan.fps, prompt_used=prompt_used)
        assert audio is not None
        with timer("audio_decode"):
            waveform = decode_audio(self.pipeline, audio)
        return Clip(
            frames=frames,
            fps=plan.fps,
            audio=waveform,
            sample_rate=self.sample_rate,
            prompt_used=prompt_used,
        )

    @contextlib.contextmanager
    def _text_encoder_on_device(self) -> Iterator[None]:
        """A released text encoder comes to the device for the prompt, then goes back."""
        encoder = self.pipeline.text_encoder
        if self.release_text_encoder:
            encoder.to(self.device)
        try:
            yield
        finally:
            if self.release_text_encoder:
                encoder.to("cpu")

    def _enhanced_prompt(self, plan: GenerationPlan) -> str:
        """LTX-2's own rewrite of the prompt (its Gemma text encoder, with Lightricks' system
        prompt; shown the first frame when the clip starts from an image), seeded by the plan."""
        starts = [c.pixels for c in plan.conditions if c.kind == "image" and c.latent_index == 0]
        image = PIL.Image.fromarray(starts[0][0]) if starts and starts[0] is not None else None
        system = I2V_SYSTEM_PROMPT if image is not None else T2V_SYSTEM_PROMPT
        pipeline = components.with_prompt_processor(self.pipeline)
        [enhanced] = pipeline.enhance_prompt(
            plan.prompt,
            system_prompt=system,
            max_new_tokens=plan.enhanced_prompt_tokens,
            seed=plan.seed,
            image=image,
            device=self.device,
        )
        return str(enhanced).strip() or plan.prompt

    def _denoise(
        self,
        plan: GenerationPlan,
        stage: StagePlan,
        embeds: PromptEmbeds,
        latents: tuple[torch.Tensor | None, torch.Tensor | None],
        generator: torch.Generator,
        progress: Progress,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One stage to (denormalized) video and audio latents."""
        self._use_adapters(stage.distilled_lora, plan)
        pipeline = self._pipeline_for(plan)
        # A fixed (distilled) schedule runs as given; a spaced one with the model's own shifting.
        pipeline.scheduler = self._schedulers["fixed" if stage.sigmas else "spaced"]
        args = stage_args(plan, stage, embeds, dict(self.spec.extra_call_args))
        video, audio = pipeline(
            **args,
            **condition_args(plan),
            latents=latents[0],
            audio_latents=latents[1],
            generator=generator,
            callback_on_step_end=progress,
        )
        return video, audio

    def _pipeline_for(self, plan: GenerationPlan) -> Any:
        """The text-to-video pipeline, or for a plan with conditions the model's condition
        pipeline, built once over the same loaded components (no second copy of the weights)."""
        if not plan.conditions:
            return self.pipeline
        if self._conditioned is None:
            self._conditioned = components.condition_pipeline(self.spec, self.pipeline)
        return self._conditioned

    def upsample(self, video: torch.Tensor) -> torch.Tensor:
        """2x in space, on denormalized latents (what LTX2LatentUpsamplePipeline does)."""
        upsampler = self.upsampler
        assert upsampler is not None  # generate refuses a plan of several stages without one
        return upsampler(video.to(device=self.device, dtype=upsampler.dtype))

    def lora_active(self) -> bool:
        """Whether the distilled LoRA acts on the transformer now."""
        if self.lora == "fused":
            return True
        if self.lora != "adapter":
            return False
        from peft.tuners.tuners_utils import BaseTunerLayer

        return any(
            not layer.disable_adapters and LORA_ADAPTER in layer.active_adapters
            for layer in self.pipeline.transformer.modules()
            if isinstance(layer, BaseTunerLayer)
        )

    def _use_adapters(self, distilled: bool, plan: GenerationPlan) -> None:
        """The distilled LoRA where the stage wants it, and the request's LoRAs, active."""
        if self.lora == "fused" and not distilled:
            raise ModelUnavailable(
                f"model {self.spec.id!r} has the distilled LoRA fused into its weights; "
                "a stage without it cannot run on this engine"
            )
        wanted = [(LORA_ADAPTER, 1.0)] if distilled and self.lora == "adapter" else []
        wanted += self.request_loras.adapters(plan.loras)
        loaded = self.lora == "adapter" or bool(self.request_loras.loaded)
        loras.activate(self.pipeline, wanted, loaded)

    def _tiled(self, plan: GenerationPlan) -> bool:
        return speed.decide_vae_tiling(
            self.settings.vae_tiling, plan.width, plan.height, plan.num_frames
        )

    def warm_up(self, seconds: float = 1.0) -> None:
        """One short clip at the served default size: compiles the transformer blocks (stage 1
        and refine shapes, so later clips reuse dynamic-shape kernels) and fills caches."""
        self.generate(self.warm_up_plan(seconds), lambda done, total: None, lambda: False)
        logger.info("warm-up clip done: %s", self.last_timings)

    def warm_up_plan(self, seconds: float = 1.0) -> GenerationPlan:
        """The warm-up clip's plan: `seconds` long at the served default size."""
        aspect_ratio = next(iter(self.spec.output_sizes))
        request = GenerationRequest(model=self.spec.id, prompt="warm-up", aspect_ratio=aspect_ratio)
        plan = plan_generation(request, self.spec, seed=0)
        frames = max(1, round(seconds * plan.fps / self.spec.frame_multiple))
        return replace(
            plan,
            num_frames=frames * self.spec.frame_multiple + 1,
            output_frames=frames * self.spec.frame_multiple,
        )


def _timings(plan: GenerationPlan, seconds: dict[str, float]) -> dict[str, float]:
    timings = {name: round(value, 4) for name, value in seconds.items()}
    if "stage1" in seconds and plan.stages:
        timings["stage1_per_step"] = round(
            seconds["stage1"] / plan.stages[0].num_inference_steps, 4
        )
    return timings


def _stage_schedulers(scheduler: Any, spaced_changes: Mapping[str, object]) -> dict[str, Any]:
    """The model's scheduler for spaced schedules (with the preset's changes); a copy that
    applies no shift for fixed sigmas."""
    fixed = type(scheduler).from_config(
        scheduler.config, use_dynamic_shifting=False, shift_terminal=None, shift=1.0
    )
    if spaced_changes:
        scheduler = type(scheduler).from_config(scheduler.config, **spaced_changes)
    return {"spaced": scheduler, "fixed": fixed}


# -- building an engine ---------------------------------------------------------------------------


def load_engine(spec: ModelSpec, settings: Settings) -> ModelRunner:
    """Load `spec`'s weights, apply the speed features; any failure is a ModelUnavailable."""
    device = components.resolve_device(settings.device)
    dtype = components.resolve_dtype(settings.dtype, device)
    logger.info("speed: dtype = %s on %s", str(dtype).removeprefix("torch."), device)
    sources = components.resolve_sources(spec, settings)
    pipeline = components.load_pipeline(spec, sources.pipeline, dtype)
    upsampler = None
    if sources.upsampler is not None:
        upsampler = components.load_upsampler(spec, sources.upsampler, dtype)
    return engine_from_components(spec, pipeline, upsampler, settings, device, lora=sources.lora)


def engine_from_components(
    spec: ModelSpec,
    pipeline: Any,
    upsampler: Any | None,
    settings: Settings,
    device: torch.device,
    lora: Source | dict[str, torch.Tensor] | None = None,
) -> ModelRunner:
    """An engine over components already in memory (e.g. random weights on a GPU), with the
    speed features applied. `lora`: the distilled LoRA to load (a source or a state dict)."""
    hw = speed.probe(device)
    features = {"lora": _prepare_lora(pipeline, spec, lora)}
    features["offload"] = speed.decide_offload(settings.offload, hw)
    release = speed.decide_release_text_encoder(
        settings.release_text_encoder, features["offload"], hw
    )
    features["release_text_encoder"] = "on" if release else "off"
    logger.info("speed: release_text_encoder = %s", features["release_text_encoder"])
    _place(pipeline, upsampler, features["offload"], device, release)
    transformer = pipeline.transformer
    features["fp8"] = speed.apply_fp8(transformer, settings.fp8, hw)
    backend = speed.decide_attention_backend(settings.attention_backend, hw)
    features["attention"] = speed.apply_attention_backend(transformer, backend, hw)
    cache = speed.apply_step_cache(transformer, settings.step_cache, settings.step_cache_threshold)
    features["step_cache"] = cache
    compiled = speed.decide_compile(settings.compile, hw)
    features["compile"] = speed.apply_compile(
        transformer, compiled, settings.compile_cache_dir, fullgraph=cache == "none"
    )
    features["vae_tiling"] = settings.vae_tiling
    tiling = (settings.vae_tiling, speed.TILING_PIXELS)
    logger.info("speed: vae_tiling = %s (auto tiles from %d pixels x frames)", *tiling)
    pipeline.set_progress_bar_config(disable=True)
    return ModelRunner(spec, pipeline, upsampler, device, settings, features)


def _prepare_lora(
    pipeline: Any, spec: ModelSpec, lora: Source | dict[str, torch.Tensor] | None
) -> str:
    """Load the distilled LoRA; fuse it when every stage runs with it (no per-step LoRA cost)."""
    if lora is None:
        wanted = any(stage.distilled_lora for stage in spec.stages)
        detail = "no LoRA weights named" if wanted else "no stage uses it"
        logger.info("speed: distilled LoRA = none (%s)", detail)
        return "none"
    components.load_lora(pipeline, spec, lora)
    if all(stage.distilled_lora for stage in spec.stages):
        pipeline.fuse_lora(components=["transformer"], lora_scale=1.0, adapter_names=[LORA_ADAPTER])
        pipeline.unload_lora_weights()
        logger.info("speed: distilled LoRA = fused (every stage runs with it)")
        return "fused"
    logger.info("speed: distilled LoRA = adapter (toggled per stage)")
    return "adapter"


def _place(
    pipeline: Any, upsampler: Any | None, offload: str, device: torch.device, release: bool
) -> None:
    """Offload per the decision; without offload everything on `device` except a released
    text encoder, which waits on the CPU until the next prompt."""
    try:
        speed.apply_offload(
            pipeline, offload, device, keep_on_cpu=("text_encoder",) if release else ()
        )
        if upsampler is not None:
            upsampler.to(device)
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise ModelUnavailable(
            f"cannot place the model on device {device} (offload {offload}): {exc}; "
            "check KINEMA_DEVICE and KINEMA_OFFLOAD"
        ) from exc
