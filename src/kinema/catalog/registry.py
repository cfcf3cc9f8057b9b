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

# The hosted API's Kling image-to-video ids: the served model answers to them.
KLING_IMAGE_ALIASES = (
    "klingai/video-v2-6-pro-image-to-video",
    "klingai/v2.5-turbo/pro/image-to-video",
    "klingai/v2.1-master-image-to-video",
    "klingai/v2-master-image-to-video",
    "kling-video/v1.6/pro/image-to-video",
    "kling-video/v1.6/standard/image-to-video",
    "kling-video/v1/pro/image-to-video",
    "kling-video/v1/standard/image-to-video",
)

# The hosted API's own LTX-2 ids, by the preset each asks for: the served model of that preset
# answers to it (or, where none is served, the default one).
LTXV_ALIASES: Mapping[str, str] = {"ltxv/ltxv-2": "quality", "ltxv/ltxv-2-fast": "fast"}

HOSTED_ALIASES = (*KLING_ALIASES, *KLING_IMAGE_ALIASES, *LTXV_ALIASES)


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
    output_sizes: Mapping[str, tuple[int, int]]  # the native size of each aspect ratio
    size_multiple: int  # of the generation size (64 for two stages: stage 1 at half is 32k)
    frame_multiple: int  # frames must be k * frame_multiple + 1
    stages: tuple[StageSpec, ...]
    guidance_range: tuple[float, float]
    guidance_default: float
    audio_guidance_default: float = 7.0  # at guidance_default; scaled with it
    has_audio: bool = True
    max_sequence_length: int = 1024
    # What a request may ask for beyond the native sizes: any even width x height from
    # `min_side` up to `max_pixels`, lengths from `min_seconds` to `max_seconds`, these rates.
    min_side: int = 64
    max_side: int = 3840
    max_pixels: int = 3840 * 2160
    min_seconds: float = 1.0
    max_seconds: float = 20.0
    frame_rates: tuple[float, ...] = (24.0, 25.0, 30.0, 48.0, 50.0)
    # The pipeline class (built from the same components) that takes image and clip conditions;
    # "": the model makes video from text only.
    condition_pipeline: str = ""
    # Whether the model rewrites prompts itself (LTX-2's Gemma text encoder doubles as one), and
    # how many tokens a rewrite may have (None: the pipeline's own limit).
    enhances_prompts: bool = True
    enhanced_prompt_tokens: int | None = None
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
    condition_pipeline="LTX2ConditionPipeline",
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
    condition_pipeline="LTX2ConditionPipeline",
    weights="",
    weights_setting="KINEMA_TINY_WEIGHTS",
    fps=24.0,
    output_sizes={"16:9": (96, 54), "9:16": (54, 96), "1:1": (64, 64)},
    size_multiple=64,
    min_side=32,
    max_side=1920,
    max_pixels=1920 * 1080,
    frame_multiple=8,
    stages=FAST_STAGES,
    guidance_range=(1.0, 7.0),
    guidance_default=4.0,
    max_sequence_length=16,
    enhanced_prompt_tokens=32,
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
        if requested in KLING_ALIASES or requested in KLING_IMAGE_ALIASES:
            return self.default
        if requested in LTXV_ALIASES:
            return self._of_preset(LTXV_ALIASES[requested])
        return None

    def _of_preset(self, preset: str) -> str:
        quality = [model for model in self.served if model.endswith(":quality")]
        fast = [model for model in self.served if not model.endswith(":quality")]
        return next(iter(quality if preset == "quality" else fast), self.default)

    def all_ids(self) -> list[str]:
        return [*self.served, *HOSTED_ALIASES]

    def catalog(self) -> list[dict[str, str]]:
        """One entry per id this deployment answers to: served models, then aliases."""
        models = [{"id": m, "description": get_spec(m).description} for m in self.served]
        aliases = [{"id": alias, "alias_of": self.resolve(alias) or ""} for alias in HOSTED_ALIASES]
        return models + aliases

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
