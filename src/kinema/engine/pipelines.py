"""Loading a model's diffusers pipeline and running one generation plan through it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kinema.config import Settings
from kinema.domain import Clip
from kinema.engine.plan import GenerationPlan
from kinema.engine.registry import ModelSpec
from kinema.errors import GenerationCanceled, ModelUnavailable

StepCallback = Callable[[int, int], None]  # (steps_done, total_steps), after each denoising step

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Engine:
    """One loaded model, kept in memory between jobs."""

    def __init__(self, spec: ModelSpec, pipeline: Any, device: torch.device) -> None:
        self.spec = spec
        self.pipeline = pipeline
        self.device = device

    @property
    def sample_rate(self) -> int:
        return int(self.pipeline.vocoder.config.output_sampling_rate)

    def generate(
        self, plan: GenerationPlan, on_step: StepCallback, is_canceled: Callable[[], bool]
    ) -> Clip:
        if is_canceled():
            raise GenerationCanceled("canceled before generation started")
        watcher = _StepWatcher(plan.num_inference_steps, on_step, is_canceled)
        with torch.inference_mode():
            video, audio = self.pipeline(
                **self.call_args(plan), callback_on_step_end=watcher, return_dict=False
            )
        if watcher.canceled or is_canceled():
            raise GenerationCanceled("canceled while generating; the output was discarded")
        return self._clip(plan, video, audio)

    def call_args(self, plan: GenerationPlan) -> dict[str, Any]:
        """Every argument of the pipeline call, from the plan and the spec only."""
        return {
            "prompt": plan.prompt,
            "negative_prompt": plan.negative_prompt,
            "width": plan.width,
            "height": plan.height,
            "num_frames": plan.num_frames,
            "frame_rate": plan.fps,
            "num_inference_steps": plan.num_inference_steps,
            "guidance_scale": plan.guidance_scale,
            "max_sequence_length": plan.max_sequence_length,
            "generator": torch.Generator(device=self.device).manual_seed(plan.seed),
            "output_type": "np",
            **self.spec.extra_call_args,
        }

    def _clip(self, plan: GenerationPlan, video: Any, audio: Any) -> Clip:
        frames = _frames_uint8(video[0])
        if not plan.generate_audio:
            return Clip(frames=frames, fps=plan.fps)
        return Clip(
            frames=frames,
            fps=plan.fps,
            audio=_waveform(audio[0]),
            sample_rate=self.sample_rate,
        )


class _StepWatcher:
    """`callback_on_step_end`: reports progress; on cancel, raises the pipeline's interrupt flag."""

    def __init__(
        self, planned_steps: int, on_step: StepCallback, is_canceled: Callable[[], bool]
    ) -> None:
        self.planned_steps = planned_steps
        self.on_step = on_step
        self.is_canceled = is_canceled
        self.canceled = False

    def __call__(
        self, pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        total = getattr(pipeline, "num_timesteps", None) or self.planned_steps
        self.on_step(step + 1, total)
        if self.is_canceled():
            self.canceled = True
            pipeline._interrupt = True
        return {}


def _frames_uint8(video: Any) -> np.ndarray:
    """(F, H, W, 3) float in [0, 1] → uint8."""
    frames = video.float().cpu().numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _waveform(audio: Any) -> np.ndarray:
    """(channels, samples) float32 in [-1, 1]."""
    samples = audio.float().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    if samples.ndim == 1:
        samples = samples[np.newaxis, :]
    return np.clip(samples, -1.0, 1.0).astype(np.float32)


def load_engine(spec: ModelSpec, settings: Settings) -> Engine:
    """Load `spec`'s pipeline onto the configured device; any failure is a ModelUnavailable."""
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    source = resolve_weights(spec, settings)
    pipeline = _load_pipeline(spec, source, dtype)
    try:
        pipeline.to(device)
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise ModelUnavailable(
            f"cannot move model {spec.id!r} to device {device}: {exc}; check KINEMA_DEVICE"
        ) from exc
    pipeline.set_progress_bar_config(disable=True)
    return Engine(spec, pipeline, device)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ModelUnavailable(f"KINEMA_DEVICE={name!r} is not a device: {exc}") from exc


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return DTYPES[name]
    except KeyError:
        known = ", ".join(["auto", *DTYPES])
        raise ModelUnavailable(f"KINEMA_DTYPE={name!r} is not one of: {known}") from None


def resolve_weights(spec: ModelSpec, settings: Settings) -> str:
    """A local directory or a Hub id; kinema builds the tiny model itself unless overridden."""
    if spec.id == "tiny-ltx2" and not settings.tiny_weights:
        from kinema.engine.tiny import ensure_tiny_ltx2

        try:
            return str(ensure_tiny_ltx2(settings.models_dir))
        except OSError as exc:
            raise ModelUnavailable(
                f"cannot build model {spec.id!r} in {settings.models_dir}: {exc}; "
                f"set {spec.weights_setting} to a directory holding its weights"
            ) from exc
    source = settings.weights_for(spec.id, spec.weights)
    if not source:
        raise ModelUnavailable(f"model {spec.id!r} has no weights; set {spec.weights_setting}")
    return source


def _load_pipeline(spec: ModelSpec, source: str, dtype: torch.dtype) -> Any:
    location = _local_dir(spec, source) or source
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    pipeline_class = getattr(diffusers, spec.pipeline)
    try:
        return pipeline_class.from_pretrained(location, dtype=dtype)
    except Exception as exc:
        raise ModelUnavailable(
            f"cannot load model {spec.id!r} from {source!r} ({type(exc).__name__}: {exc}); "
            f"set {spec.weights_setting} to a local directory holding its weights, or to a "
            "Hugging Face Hub id reachable from here (offline, pre-fill the Hugging Face cache)"
        ) from exc


def _local_dir(spec: ModelSpec, source: str) -> str | None:
    """`source` as a local directory, None for a Hub id; a path to nowhere is an error."""
    path = Path(source).expanduser()
    if path.is_dir():
        return str(path)
    if path.is_absolute() or source.startswith((".", "~")) or path.exists():
        raise ModelUnavailable(
            f"cannot load model {spec.id!r}: {source!r} is not a directory; set "
            f"{spec.weights_setting} to a directory holding its weights or a Hugging Face Hub id"
        )
    return None
