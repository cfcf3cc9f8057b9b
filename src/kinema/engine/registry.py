"""Which models kinema can serve, and what each one needs. Torch-free: the API uses it too."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kinema.errors import ModelUnavailable

ASPECT_RATIOS = ("16:9", "9:16", "1:1")
FULL_HD_SIZES: Mapping[str, tuple[int, int]] = {
    "16:9": (1920, 1080),
    "9:16": (1080, 1920),
    "1:1": (1080, 1080),
}

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
class ModelSpec:
    """Everything the plan and the engine need to know about one model."""

    id: str
    description: str
    pipeline: str  # the diffusers pipeline class name
    weights: str  # Hub id or local directory; "" = built by kinema itself
    weights_setting: str  # the setting that overrides `weights`, named in errors
    fps: float
    output_sizes: Mapping[str, tuple[int, int]]
    size_multiple: int
    frame_multiple: int  # frames must be k * frame_multiple + 1
    num_inference_steps: int
    guidance_range: tuple[float, float]
    guidance_default: float
    uses_cfg: bool = True
    has_audio: bool = True
    max_sequence_length: int = 1024
    extra_call_args: Mapping[str, object] = field(default_factory=dict)


LTX_2 = ModelSpec(
    id="ltx-2",
    description="Lightricks LTX-2: joint audio+video diffusion, 24 fps, up to 1920x1080",
    pipeline="LTX2Pipeline",
    weights="Lightricks/LTX-2",
    weights_setting="KINEMA_LTX2_WEIGHTS",
    fps=24.0,
    output_sizes=FULL_HD_SIZES,
    size_multiple=32,
    frame_multiple=8,
    num_inference_steps=40,
    guidance_range=(1.0, 7.0),
    guidance_default=4.0,
)

TINY_LTX2 = ModelSpec(
    id="tiny-ltx2",
    description="LTX-2 pipeline with tiny random weights built locally: noise, for tests on a CPU",
    pipeline="LTX2Pipeline",
    weights="",
    weights_setting="KINEMA_TINY_WEIGHTS",
    fps=24.0,
    output_sizes={"16:9": (96, 54), "9:16": (54, 96), "1:1": (64, 64)},
    size_multiple=32,
    frame_multiple=8,
    num_inference_steps=4,
    guidance_range=(1.0, 7.0),
    guidance_default=4.0,
    max_sequence_length=16,
    extra_call_args={"stg_scale": 0.0, "audio_stg_scale": 0.0},
)

MODELS: Mapping[str, ModelSpec] = {spec.id: spec for spec in (LTX_2, TINY_LTX2)}


def get_spec(model_id: str) -> ModelSpec:
    try:
        return MODELS[model_id]
    except KeyError:
        known = ", ".join(MODELS)
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
        if requested in self.served:
            return requested
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
        return cls(tuple(dict.fromkeys(model_ids)))
