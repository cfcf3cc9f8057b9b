"""Where a model's weights come from, and loading them: pipeline, 2x upsampler, distilled LoRA.

Each location is a local path or a Hugging Face Hub id; every failure is a ModelUnavailable that
names the setting to fix. The tiny model is built locally unless KINEMA_TINY_WEIGHTS points at one.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kinema.catalog.registry import ModelSpec, weights_keys
from kinema.config import Settings
from kinema.errors import ModelUnavailable

logger = logging.getLogger("kinema.engine")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LORA_ADAPTER = "distilled"
TINY_FAMILY = "tiny-ltx2"
# The tiny twins, each built under the models dir on first use: the module that builds it (its
# TINY_DIR_NAME, BUILD_VERSION) and the function that ensures it.
TINY_BUILDS = {
    TINY_FAMILY: ("kinema.engine.tiny", "ensure_tiny_ltx2"),
    "tiny-ltx-2.5": ("kinema.engine.tiny_ltx25", "ensure_tiny_ltx25"),
    "tiny-wan-2.2": ("kinema.engine.wan", "ensure_tiny_wan"),
    "tiny-kandinsky-6": ("kinema.engine.kandinsky", "ensure_tiny_kandinsky"),
}


@dataclass(frozen=True)
class Source:
    """One component's weights: a local path or Hub id (+ subfolder or file within it)."""

    location: str
    setting: str  # named in errors
    subfolder: str | None = None
    file: str | None = None


@dataclass(frozen=True)
class Sources:
    pipeline: Source
    upsampler: Source | None  # None: a single-stage model
    lora: Source | None  # None: no stage runs the distilled LoRA, or the spec names none


def family(spec: ModelSpec) -> str:
    return spec.id.split(":")[0]


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


def resolve_sources(spec: ModelSpec, settings: Settings) -> Sources:
    pipeline = Source(resolve_weights(spec, settings), spec.weights_setting)
    return Sources(
        pipeline,
        _upsampler_source(spec, settings, pipeline),
        _lora_source(spec, settings, pipeline),
    )


def resolve_weights(spec: ModelSpec, settings: Settings) -> str:
    """The pipeline's local directory or Hub id; kinema builds the tiny twins itself."""
    if _built_here(spec, settings):
        return built_tiny(spec, settings, tiny_builder(family(spec)))
    source = settings.weights_for(weights_keys(spec), spec.weights)
    if not source:
        raise ModelUnavailable(f"model {spec.id!r} has no weights; set {spec.weights_setting}")
    return source


def _built_here(spec: ModelSpec, settings: Settings) -> bool:
    """Whether kinema builds `spec` itself: a tiny twin no weights setting points elsewhere."""
    return family(spec) in TINY_BUILDS and not settings.weights_for(
        weights_keys(spec), spec.weights
    )


def tiny_builder(name: str) -> Callable[[Path], Path]:
    """The function that builds (once) the tiny twin `name`."""
    module, function = TINY_BUILDS[name]
    ensure: Callable[[Path], Path] = getattr(importlib.import_module(module), function)
    return ensure


def needs_tiny_build(spec: ModelSpec, settings: Settings) -> bool:
    """Whether loading `spec` builds its tiny twin first (its first use in this data dir)."""
    if not _built_here(spec, settings):
        return False
    from kinema.engine.tiny import is_current_build

    module = importlib.import_module(TINY_BUILDS[family(spec)][0])
    directory = settings.models_dir / module.TINY_DIR_NAME
    return not is_current_build(directory, module.BUILD_VERSION)


def built_tiny(spec: ModelSpec, settings: Settings, ensure: Callable[[Path], Path]) -> str:
    """The directory of `spec`'s tiny twin, built by `ensure` under the models dir if missing."""
    try:
        return str(ensure(settings.models_dir))
    except OSError as exc:
        raise ModelUnavailable(
            f"cannot build model {spec.id!r} in {settings.models_dir}: {exc}; "
            f"set {spec.weights_setting} to a directory holding its weights"
        ) from exc


def _overrides(spec: ModelSpec, settings: Settings) -> tuple[str | None, str, str | None, str]:
    """(upsampler override, its setting, LoRA override, its setting) for the spec's family."""
    if family(spec) == "ltx-2":
        return (
            settings.ltx2_upsampler,
            "KINEMA_LTX2_UPSAMPLER",
            settings.ltx2_distilled_lora,
            "KINEMA_LTX2_DISTILLED_LORA",
        )
    return None, spec.weights_setting, None, spec.weights_setting


def _upsampler_source(spec: ModelSpec, settings: Settings, pipeline: Source) -> Source | None:
    if not spec.two_stage:
        return None
    override, setting, _, _ = _overrides(spec, settings)
    if override:
        return Source(override, setting, subfolder=spec.upsampler_subfolder)
    return Source(spec.upsampler_weights or pipeline.location, setting, spec.upsampler_subfolder)


def _lora_source(spec: ModelSpec, settings: Settings, pipeline: Source) -> Source | None:
    if not any(stage.distilled_lora for stage in spec.stages):
        return None
    _, _, override, setting = _overrides(spec, settings)
    if override:
        return Source(override, setting, file=spec.lora_file)
    if not spec.lora_weights and not spec.lora_file:
        return None
    return Source(spec.lora_weights or pipeline.location, setting, file=spec.lora_file)


def quiet_libraries() -> None:
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def load_pipeline(spec: ModelSpec, source: Source, dtype: torch.dtype) -> Any:
    location = _local_path(spec, source, True, "pipeline") or source.location
    quiet_libraries()
    import diffusers

    pipeline_class = getattr(diffusers, spec.pipeline)
    chosen: dict[str, Any] = {name: None for name in spec.unloaded_components}
    try:
        if spec.transformer_subfolder:
            chosen["transformer"] = _transformer(location, spec, dtype)
        pipeline = pipeline_class.from_pretrained(location, dtype=dtype, **chosen)
    except Exception as exc:
        raise _unavailable(spec, "pipeline", source, exc) from exc
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _transformer(location: str, spec: ModelSpec, dtype: torch.dtype) -> Any:
    """The preset's own transformer, from its subfolder of the weights (the class its config
    names)."""
    from diffusers import AutoModel

    return AutoModel.from_pretrained(location, subfolder=spec.transformer_subfolder, dtype=dtype)


def condition_pipeline(spec: ModelSpec, pipeline: Any) -> Any:
    """`spec`'s condition pipeline over `pipeline`'s loaded components (diffusers' `from_pipe`)."""
    import diffusers

    if not spec.condition_pipeline:
        raise ModelUnavailable(f"model {spec.id!r} takes no image or clip conditions")
    with _only_errors_logged():  # from_pipe's dtype notes, an image processor's torchvision note
        conditioned = getattr(diffusers, spec.condition_pipeline).from_pipe(pipeline)
    conditioned.set_progress_bar_config(disable=True)
    return conditioned


@contextlib.contextmanager
def _only_errors_logged() -> Iterator[None]:
    import diffusers
    import transformers

    libraries = (diffusers.utils.logging, transformers.utils.logging)
    levels = [library.get_verbosity() for library in libraries]
    for library in libraries:
        library.set_verbosity_error()
    try:
        yield
    finally:
        for library, level in zip(libraries, levels, strict=True):
            library.set_verbosity(level)


def with_prompt_processor(pipeline: Any) -> Any:
    """`pipeline`, given a Gemma 3 processor where its weights came without one: prompt
    enhancement needs it (chat template, and the first frame as an image for image-to-video)."""
    if getattr(pipeline, "processor", None) is None:
        from transformers import Gemma3ImageProcessorPil, Gemma3Processor

        processor = Gemma3Processor(
            image_processor=Gemma3ImageProcessorPil(), tokenizer=pipeline.tokenizer
        )
        pipeline.register_modules(processor=processor)
    return pipeline


def load_upsampler(spec: ModelSpec, source: Source, dtype: torch.dtype) -> Any:
    """The 2x latent upsampler: a directory holding its config, or a repo and subfolder."""
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    quiet_libraries()
    local = _local_path(spec, source, True, "latent upsampler")
    location, subfolder = local or source.location, source.subfolder
    if local and (Path(local) / "config.json").is_file():
        subfolder = None
    try:
        return LTX2LatentUpsamplerModel.from_pretrained(location, subfolder=subfolder, dtype=dtype)
    except Exception as exc:
        raise _unavailable(spec, "latent upsampler", source, exc) from exc


def load_lora(pipeline: Any, spec: ModelSpec, source: Source | dict[str, Any]) -> None:
    """Load the distilled LoRA into the transformer as adapter `distilled` (diffusers + peft)."""
    hub_file = {}
    if (
        isinstance(source, Source)
        and source.file
        and _local_path(spec, source, False, "distilled LoRA") is None
    ):
        hub_file = {"weight_name": source.file}
    try:
        weights = _lora_weights(spec, source)
        pipeline.load_lora_weights(weights, adapter_name=LORA_ADAPTER, **hub_file)
    except Exception as exc:
        if isinstance(source, Source):
            raise _unavailable(spec, "distilled LoRA", source, exc) from exc
        raise ModelUnavailable(f"cannot load the distilled LoRA of {spec.id!r}: {exc}") from exc


def _lora_weights(spec: ModelSpec, source: Source | dict[str, Any]) -> str | dict[str, Any]:
    """A state dict read from a local file, a local directory, or the Hub id as is."""
    if not isinstance(source, Source):
        return dict(source)
    local = _local_path(spec, source, False, "distilled LoRA")
    if local is None:
        return source.location
    path = Path(local)
    if path.is_dir() and source.file and (path / source.file).is_file():
        path = path / source.file
    if path.is_dir():
        return str(path)  # diffusers picks the directory's one .safetensors file
    from safetensors.torch import load_file

    return load_file(str(path))


def _unavailable(spec: ModelSpec, what: str, source: Source, exc: Exception) -> ModelUnavailable:
    inner = source.subfolder or source.file
    where = source.location + (f" ({inner})" if inner else "")
    return ModelUnavailable(
        f"cannot load the {what} of model {spec.id!r} from {where!r} ({type(exc).__name__}: "
        f"{exc}); set {source.setting} to a local path holding it, or to a Hugging Face Hub id "
        "reachable from here (offline, pre-fill the Hugging Face cache)"
    )


def _local_path(
    spec: ModelSpec, source: Source, want_dir: bool, what: str = "weights"
) -> str | None:
    """`source` as a local path, None for a Hub id; a path to nowhere is an error."""
    path = Path(source.location).expanduser()
    if path.is_dir() or (path.is_file() and not want_dir):
        return str(path)
    looks_local = path.is_absolute() or source.location.startswith((".", "~")) or path.exists()
    if looks_local:
        kind = "directory" if want_dir else "file or directory"
        raise ModelUnavailable(
            f"cannot load the {what} of model {spec.id!r}: {source.location!r} is not a {kind}; "
            f"set {source.setting} to a local path holding it or a Hugging Face Hub id"
        )
    return None
