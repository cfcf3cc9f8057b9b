"""Which models kinema can serve, and what each one needs. Torch-free: the API uses it too."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kinema.catalog.families import FAMILY_MODELS
from kinema.catalog.families.ltx2 import (
    DISTILLED_SIGMAS,
    LTX_2,
    LTX_2_QUALITY,
    REFINE_SIGMAS,
    TINY_LTX2,
    TINY_LTX2_QUALITY,
)
from kinema.catalog.spec import ASPECT_RATIOS, FULL_HD_SIZES, ModelSpec, StageSpec
from kinema.errors import ModelUnavailable

__all__ = [
    "ASPECT_RATIOS",
    "DISTILLED_SIGMAS",
    "FULL_HD_SIZES",
    "HOSTED_ALIASES",
    "KLING_ALIASES",
    "KLING_IMAGE_ALIASES",
    "LTXV_ALIASES",
    "LTX_2",
    "LTX_2_QUALITY",
    "MODELS",
    "PRESET_ALIASES",
    "REFINE_SIGMAS",
    "TINY_LTX2",
    "TINY_LTX2_QUALITY",
    "ModelSpec",
    "ServedModels",
    "StageSpec",
    "canonical_id",
    "get_spec",
    "known_models",
    "weights_keys",
]

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


MODELS: Mapping[str, ModelSpec] = {spec.id: spec for spec in FAMILY_MODELS}
PRESET_ALIASES: Mapping[str, str] = {"ltx-2:fast": "ltx-2", "tiny-ltx2:fast": "tiny-ltx2"}


def canonical_id(model_id: str) -> str:
    return PRESET_ALIASES.get(model_id, model_id)


def weights_keys(spec: ModelSpec) -> tuple[str, ...]:
    """The ids whose weights settings name `spec`'s weights: its own, then (for a preset such as
    `ltx-2:quality`) the model it is a preset of, when they load the same weights."""
    base = MODELS.get(spec.id.split(":")[0])
    if base is None or base.id == spec.id or base.weights != spec.weights:
        return (spec.id,)
    return (spec.id, base.id)


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


def model_facts(spec: ModelSpec) -> dict[str, str]:
    """What a model makes and needs, for listings: its family, whether it makes sound, and the
    GPU memory of its weights ("" where not known)."""
    memory = f"{spec.memory_gb:g} GB" if spec.memory_gb is not None else ""
    return {"family": spec.family, "sound": "yes" if spec.has_audio else "no", "gpu_memory": memory}


def known_models() -> list[dict[str, str]]:
    """Every model and preset id kinema can serve: each model, then the preset ids that name it
    (`ltx-2:fast` is `ltx-2`), as `{"id", "description"}` or `{"id", "alias_of"}`."""
    entries: list[dict[str, str]] = []
    for spec in MODELS.values():
        entries.append({"id": spec.id, "description": spec.description, **model_facts(spec)})
        aliases = [alias for alias, target in PRESET_ALIASES.items() if target == spec.id]
        entries += [{"id": alias, "alias_of": spec.id} for alias in aliases]
    return entries
