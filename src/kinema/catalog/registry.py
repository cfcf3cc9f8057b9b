"""Which models kinema can serve, and what each one needs. Torch-free: the API uses it too."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from kinema.errors import ModelUnavailable

ASPECT_RATIOS = ("16:9", "9:16", "1:1")
FULL_HD_SIZES: Mapping[str, tuple[int, int]] = {
    "16:9": (1920, 1080),
    "9:16": (1080, 1920),
    "1:1": (1080, 1080),
}

# The distilled LTX-2 schedules (diffusers.pipelines.ltx2.utils), copied: the API is torch-free.
DISTILLED_SIGMAS = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875)
REFINE_SIGMAS = (0.909375, 0.725, 0.421875)

# The hosted API's Kling text-to-video ids. Whichever model a deployment serves by default answers
# to all of them, so clients written against the hosted API work unchanged.
KLING_ALIASES = (
    "klingai/video-v2-6-pro-text-to-video",
    "klingai/v2.5-turbo/pro/text-to-video",
    "klingai/v2.5-turbo/standard/text-to-video",
    "klingai/v2.1-master-text-to-video",
    "klingai/v2-master-text-to-video",
    "kling-video/v1.6/pro/text-to-video",
    "kling-video/v1.6/standard/text-to-video",
    "kling-video/v1/pro/text-to-video",
    "kling-video/v1/standard/text-to-video",
)


@dataclass(frozen=True)
class StageSpec:
    """One denoising pass. A second stage runs after 2x latent upsampling, as a short refine."""

    steps: int
    scale: float = 1.0  # this stage's frame size as a fraction of the generation size
    sigmas: tuple[float, ...] | None = None  # a fixed (distilled) schedule; None: `steps` spaced
    uses_cfg: bool = True
    noise_scale: float = 0.0  # a refine stage re-noises its input latents to this level
    distilled_lora: bool = False  # run with the distilled LoRA active

    @property
    def num_steps(self) -> int:
        return len(self.sigmas) if self.sigmas else self.steps


@dataclass(frozen=True)
class ModelSpec:
    """Everything the plan and the engine need to know about one model (or preset of one)."""

    id: str
    description: str
    pipeline: str  # the diffusers pipeline class name
    weights: str  # Hub id or local directory; "" = built by kinema itself
    weights_setting: str  # the setting that overrides `weights`, named in errors
    fps: float
    output_sizes: Mapping[str, tuple[int, int]]
    size_multiple: int  # of the generation size (64 for two stages: stage 1 at half is 32k)
    frame_multiple: int  # frames must be k * frame_multiple + 1
    stages: tuple[StageSpec, ...]
    guidance_range: tuple[float, float]
    guidance_default: float
    audio_guidance_default: float = 7.0  # at guidance_default; scaled with it
    has_audio: bool = True
    max_sequence_length: int = 1024
    upsampler_weights: str = ""  # Hub id or directory of the 2x latent upsampler
    upsampler_subfolder: str | None = None
    lora_weights: str = ""  # Hub id or directory of the distilled LoRA
    lora_file: str | None = None
    # Spatio-temporal guidance of the stages with CFG; None: the pipeline's default.
    stg_scale: float | None = None
    audio_stg_scale: float | None = None
    # The model's own call arguments (never guidance: the plan decides that), e.g. LTX-2.0's
    # legacy cross-modality timestep.
    extra_call_args: Mapping[str, object] = field(default_factory=dict)

    @property
    def two_stage(self) -> bool:
        return len(self.stages) > 1

    @property
    def uses_cfg(self) -> bool:
        return any(stage.uses_cfg for stage in self.stages)

    @property
    def total_steps(self) -> int:
        return sum(stage.num_steps for stage in self.stages)


FAST_STAGES = (
    StageSpec(steps=8, scale=0.5, sigmas=DISTILLED_SIGMAS, uses_cfg=False, distilled_lora=True),
    StageSpec(
        steps=3,
        sigmas=REFINE_SIGMAS,
        uses_cfg=False,
        noise_scale=REFINE_SIGMAS[0],
        distilled_lora=True,
    ),
)
QUALITY_STAGES = (StageSpec(steps=40, scale=0.5, uses_cfg=True), FAST_STAGES[1])

LTX_2 = ModelSpec(
    id="ltx-2",
    description="LTX-2 fast: distilled, 8 steps at half size, 2x latent upsample, 3-step refine",
    pipeline="LTX2Pipeline",
    weights="Lightricks/LTX-2",
    weights_setting="KINEMA_LTX2_WEIGHTS",
    fps=24.0,
    output_sizes=FULL_HD_SIZES,
    size_multiple=64,
    frame_multiple=8,
    stages=FAST_STAGES,
    guidance_range=(1.0, 7.0),
    guidance_default=4.0,
    upsampler_weights="Lightricks/LTX-2",
    upsampler_subfolder="latent_upsampler",
    lora_weights="Lightricks/LTX-2",
    lora_file="ltx-2-19b-distilled-lora-384.safetensors",
    # diffusers 0.42 defaults to LTX-2.3/2.5 behaviour; LTX-2.0 wants the legacy cross-modality
    # timestep and spatio-temporal guidance on block 29 (used only by stages with CFG).
    extra_call_args={"use_cross_timestep": False, "spatio_temporal_guidance_blocks": [29]},
)
LTX_2_QUALITY = replace(
    LTX_2,
    id="ltx-2:quality",
    description="LTX-2 quality: full model with CFG (40 steps at half size), 2x upsample, refine",
    stages=QUALITY_STAGES,
)

TINY_LTX2 = ModelSpec(
    id="tiny-ltx2",
    description="LTX-2 pipeline with tiny random weights built locally: noise, for tests on a CPU",
    pipeline="LTX2Pipeline",
    weights="",
    weights_setting="KINEMA_TINY_WEIGHTS",
    fps=24.0,
    output_sizes={"16:9": (96, 54), "9:16": (54, 96), "1:1": (64, 64)},
    size_multiple=64,
    frame_multiple=8,
    stages=FAST_STAGES,
    guidance_range=(1.0, 7.0),
    guidance_default=4.0,
    max_sequence_length=16,
    upsampler_subfolder="latent_upsampler",
    lora_file="distilled_lora.safetensors",
    stg_scale=0.0,
    audio_stg_scale=0.0,
)
TINY_LTX2_QUALITY = replace(
    TINY_LTX2,
    id="tiny-ltx2:quality",
    description="The tiny model's twin of LTX-2 quality: CFG first stage, 2x upsample, refine",
    stages=(StageSpec(steps=4, scale=0.5, uses_cfg=True), FAST_STAGES[1]),
)

MODELS: Mapping[str, ModelSpec] = {
    spec.id: spec for spec in (LTX_2, LTX_2_QUALITY, TINY_LTX2, TINY_LTX2_QUALITY)
}
PRESET_ALIASES: Mapping[str, str] = {"ltx-2:fast": "ltx-2", "tiny-ltx2:fast": "tiny-ltx2"}


def canonical_id(model_id: str) -> str:
    return PRESET_ALIASES.get(model_id, model_id)


def get_spec(model_id: str) -> ModelSpec:
    try:
        return MODELS[canonical_id(model_id)]
    except KeyError:
        known = ", ".join([*MODELS, *PRESET_ALIASES])
        raise ModelUnavailable(f"unknown model {model_id!r}; kinema knows: {known}") from None


@dataclass(frozen=True)
class ServedModels:
    """The model ids one deployment answers to: its served models plus the Kling aliases."""

    served: tuple[str, ...]

    def __post_init__(self) -> None:
        for model_id in self.served:
            get_spec(model_id)

    @property
    def default(self) -> str:
        return self.served[0]

    def resolve(self, requested: str) -> str | None:
        """The served model id a request's `model` names, or None if it names none."""
        if canonical_id(requested) in self.served:
            return canonical_id(requested)
        if requested in KLING_ALIASES:
            return self.default
        return None

    def all_ids(self) -> list[str]:
        return [*self.served, *KLING_ALIASES]

    def catalog(self) -> list[dict[str, str]]:
        """One entry per id this deployment answers to: served models, then aliases."""
        models = [{"id": m, "description": get_spec(m).description} for m in self.served]
        return models + [{"id": alias, "alias_of": self.default} for alias in KLING_ALIASES]

    @classmethod
    def of(cls, model_ids: Iterable[str]) -> ServedModels:
        return cls(tuple(dict.fromkeys(canonical_id(m) for m in model_ids)))


def known_models() -> list[dict[str, str]]:
    """Every model and preset id kinema can serve: each model, then the preset ids that name it
    (`ltx-2:fast` is `ltx-2`), as `{"id", "description"}` or `{"id", "alias_of"}`."""
    entries: list[dict[str, str]] = []
    for spec in MODELS.values():
        entries.append({"id": spec.id, "description": spec.description})
        aliases = [alias for alias, target in PRESET_ALIASES.items() if target == spec.id]
        entries += [{"id": alias, "alias_of": spec.id} for alias in aliases]
    return entries
