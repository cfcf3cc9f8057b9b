"""Real-size LTX-2 with random weights, built straight on the target device: the GPU benchmark's.

The architecture comes from the JSON configs in `configs/ltx2/` (the released LTX-2 2.0 sizes; their
README says where each value came from); nothing is downloaded. Every model is first built under
`accelerate.init_empty_weights()` (parameters on the meta device, so no weight memory anywhere;
buffers real, on the CPU), then each parameter gets a fresh tensor allocated on the target device
in the target dtype and filled there in place: the 19B transformer never exists in fp32, nor on
the CPU.

The values are small and sane rather than trained: biases 0, norm scales 1 (0 for Gemma's offset
RMSNorm), everything else N(0, min(std, 1/sqrt(fan_in))), so activations stay finite in bf16 and
the decoders produce finite (noise) output. The tokenizer is tiny.py's small local one, while the
text encoder's embedding table keeps the real vocabulary, so its memory is the real one.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers.models.autoencoders.autoencoder_kl_ltx2 import AutoencoderKLLTX2Video
from diffusers.models.autoencoders.autoencoder_kl_ltx2_audio import AutoencoderKLLTX2Audio
from diffusers.models.transformers.transformer_ltx2 import LTX2VideoTransformer3DModel
from diffusers.pipelines.ltx2 import LTX2TextConnectors
from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel
from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder, LTX2VocoderWithBWE
from diffusers.schedulers.scheduling_flow_match_euler_discrete import (
    FlowMatchEulerDiscreteScheduler,
)
from torch import nn
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma4UnifiedConfig,
    Gemma4UnifiedForConditionalGeneration,
)

from kinema.engine import tiny

# The diffusers classes come from their defining modules: type checkers read the names `diffusers`
# itself exports as its placeholder (dummy) classes.

CONFIGS_DIR = Path(__file__).parent / "configs" / "ltx2"
TEXT_ENCODERS = ("real", "small")
SMALL_TEXT_LAYERS = 2  # the "small" text encoder: real widths and vocabulary, 2 layers
SMALL_VISION_LAYERS = 1  # the pipeline never runs the vision tower; the small build keeps one layer
INIT_STD = 0.02
SEED = 0

# Built from their JSON config, in this order; the text encoder is built separately (transformers).
DIFFUSERS_MODELS: Mapping[str, type[Any]] = {
    "transformer": LTX2VideoTransformer3DModel,
    "connectors": LTX2TextConnectors,
    "vae": AutoencoderKLLTX2Video,
    "audio_vae": AutoencoderKLLTX2Audio,
    "vocoder": LTX2Vocoder,
    "latent_upsampler": LTX2LatentUpsamplerModel,
}
# Classes a config names (`_class_name`) instead of its component's usual one: LTX-2.3's vocoder
# with bandwidth extension.
ALTERNATE_CLASSES: dict[str, Any] = {"LTX2VocoderWithBWE": LTX2VocoderWithBWE}
# The text encoder's classes by its config's model type: Gemma 3 (LTX-2.0, 2.3), Gemma 4 (2.5).
TEXT_ENCODERS_BY_TYPE: Mapping[str, tuple[Any, Any]] = {
    "gemma3": (Gemma3ForConditionalGeneration, Gemma3Config),
    "gemma4_unified": (Gemma4UnifiedForConditionalGeneration, Gemma4UnifiedConfig),
}
MODEL_NAMES = ("text_encoder", *DIFFUSERS_MODELS)
CONFIG_NAMES = (*MODEL_NAMES, "scheduler")

Built = tuple[LTX2Pipeline, LTX2LatentUpsamplerModel, dict[str, object]]


def build_random_ltx2(
    configs_dir: Path,
    device: torch.device,
    dtype: torch.dtype,
    *,
    text_encoder: str = "real",
    seed: int = SEED,
    std: float = INIT_STD,
) -> Built:
    """The LTX-2 pipeline and its 2x latent upsampler, random weights made on `device` in `dtype`.

    `text_encoder="small"` keeps the Gemma encoder's widths and vocabulary but only 2 layers (and a
    matching connectors input projection), for GPUs where the 12B encoder does not fit beside the
    transformer. The facts: parameter counts per component, weight memory, build seconds.
    """
    started = time.perf_counter()
    configs = load_configs(configs_dir, text_encoder=text_encoder)
    empty = {name: empty_model(name, configs[name]) for name in MODEL_NAMES}
    models, seconds = materialize_models(empty, device, dtype, seed=seed, std=std)
    upsampler = models.pop("latent_upsampler")
    assert isinstance(upsampler, LTX2LatentUpsamplerModel)  # DIFFUSERS_MODELS' class for it
    pipeline = _pipeline(models, FlowMatchEulerDiscreteScheduler.from_config(configs["scheduler"]))
    seconds["total"] = round(time.perf_counter() - started, 3)
    return pipeline, upsampler, _facts(pipeline, upsampler, text_encoder, device, dtype, seconds)


def materialize_models(
    models: Mapping[str, nn.Module],
    device: torch.device,
    dtype: torch.dtype,
    *,
    seed: int = SEED,
    std: float = INIT_STD,
) -> tuple[dict[str, nn.Module], dict[str, float]]:
    """Every (meta) model of a pipeline given random weights on `device`, one after another, and
    the seconds each took. Text encoders (named `text_encoder*`) keep their floating buffers in
    fp32, as transformers does."""
    generator = torch.Generator(device=device).manual_seed(seed)
    built: dict[str, nn.Module] = {}
    seconds: dict[str, float] = {}
    for name, model in models.items():
        began = time.perf_counter()
        cast = not name.startswith("text_encoder")
        built[name] = materialize(model, device, dtype, generator, std=std, cast_buffers=cast)
        _synchronize(device)
        seconds[name] = round(time.perf_counter() - began, 3)
    return built, seconds


def random_pipeline(
    empty: Mapping[str, nn.Module],
    device: torch.device,
    dtype: torch.dtype,
    assemble: Callable[[dict[str, nn.Module]], Any],
) -> tuple[Any, dict[str, object]]:
    """A one-call pipeline at its real size: its (meta) models given random weights on `device`,
    `assemble`d with its tokenizers and scheduler; and the facts about them."""
    started = time.perf_counter()
    models, seconds = materialize_models(empty, device, dtype)
    pipeline = assemble(models)
    seconds["total"] = round(time.perf_counter() - started, 3)
    return pipeline, component_facts(models, "real", device, dtype, seconds)


def read_config(path: Path) -> dict[str, Any]:
    """One component's config file, less the class name diffusers writes into it."""
    config: dict[str, Any] = json.loads(path.read_text())
    config.pop("_class_name", None)
    return config


def component_facts(
    models: Mapping[str, nn.Module],
    text_encoder: str,
    device: torch.device,
    dtype: torch.dtype,
    seconds: Mapping[str, float],
) -> dict[str, object]:
    """What the benchmark reports about built models: parameters, weight memory, build times."""
    parameters = {name: count_parameters(model) for name, model in models.items()}
    weight_bytes = sum(_weight_bytes(model) for model in models.values())
    return {
        "text_encoder": text_encoder,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "parameters": parameters,
        "parameters_total": sum(parameters.values()),
        "weights_gib": round(weight_bytes / 2**30, 3),
        "build_seconds": dict(seconds),
    }


def load_configs(configs_dir: Path, *, text_encoder: str = "real") -> dict[str, dict[str, Any]]:
    """Every component's config from `configs_dir`, adjusted for the chosen text encoder."""
    if text_encoder not in TEXT_ENCODERS:
        raise ValueError(f"text_encoder must be one of {TEXT_ENCODERS}, not {text_encoder!r}")
    configs = {
        name: json.loads((configs_dir / f"{name}.json").read_text()) for name in CONFIG_NAMES
    }
    if text_encoder == "small":
        configs["text_encoder"] = _small_text_encoder(configs["text_encoder"])
        # The pipeline stacks every hidden state (embeddings + each layer) as the connectors' input.
        configs["connectors"]["text_proj_in_factor"] = SMALL_TEXT_LAYERS + 1
    _check_consistent(configs)
    return configs


def empty_model(name: str, config: Mapping[str, Any]) -> nn.Module:
    """One component built from its config, parameters on the meta device: no weight memory."""
    if name == "text_encoder":
        model_class, config_class = TEXT_ENCODERS_BY_TYPE[config.get("model_type", "gemma3")]
        with init_empty_weights():
            encoder = model_class(config_class.from_dict(copy.deepcopy(dict(config))))
        encoder.tie_weights()  # init_empty_weights re-creates parameters, which unties lm_head
        return encoder.eval()
    cls = ALTERNATE_CLASSES.get(config.get("_class_name", ""), DIFFUSERS_MODELS[name])
    with init_empty_weights():
        model: nn.Module = cls.from_config(dict(config))
    return model.eval()


def empty_ltx2(configs_dir: Path, *, text_encoder: str = "real") -> dict[str, nn.Module]:
    """Every LTX-2 model on the meta device (for parameter counts and config checks)."""
    configs = load_configs(configs_dir, text_encoder=text_encoder)
    return {name: empty_model(name, configs[name]) for name in MODEL_NAMES}


def materialize(
    model: nn.Module,
    device: torch.device,
    dtype: torch.dtype,
    generator: torch.Generator,
    *,
    std: float = INIT_STD,
    cast_buffers: bool = True,
) -> nn.Module:
    """Give every (meta) parameter fresh storage on `device` in `dtype`, initialised in place.

    Tied parameters stay tied, and the modules a diffusers model keeps in fp32
    (`_keep_in_fp32_modules`: norms, time embeddings) stay fp32 as `from_pretrained` keeps them.
    Buffers (computed at construction: RoPE frequencies, filters, latent statistics) move to
    `device`; `cast_buffers` also casts the floating ones to `dtype`, as diffusers'
    `from_pretrained(dtype=...)` does (transformers keeps RoPE frequencies in fp32).
    """
    fresh: dict[nn.Parameter, nn.Parameter] = {}  # holds the old ones too: no id reuse
    kept = _kept_in_fp32(model) if dtype in (torch.float16, torch.bfloat16) else ()
    with torch.no_grad():
        for module_name, module in model.named_modules():
            for name, param in list(module._parameters.items()):
                if param is None:
                    continue
                if param not in fresh:
                    path = f"{module_name}.{name}".split(".")
                    wanted = torch.float32 if any(part in kept for part in path) else dtype
                    data = torch.empty(param.shape, device=device, dtype=wanted)
                    _initialise(module, name, data, generator, std)
                    fresh[param] = nn.Parameter(data, requires_grad=False)
                module._parameters[name] = fresh[param]
        for module in model.modules():
            for name, buffer in list(module._buffers.items()):
                if buffer is not None:
                    cast = cast_buffers and buffer.is_floating_point()
                    module._buffers[name] = buffer.to(device, dtype if cast else buffer.dtype)
    return model.eval().requires_grad_(False)


def _kept_in_fp32(model: nn.Module) -> tuple[str, ...]:
    """The module names a diffusers model keeps in fp32 under a half-precision `from_pretrained`
    (transformers models are cast whole here, as their text encoders are)."""
    from diffusers import ModelMixin

    if not isinstance(model, ModelMixin):
        return ()
    return tuple(getattr(model, "_keep_in_fp32_modules", None) or ())


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters (a tied embedding counts once), on any device including meta."""
    return sum(param.numel() for param in model.parameters())


def _initialise(
    module: nn.Module, name: str, data: torch.Tensor, generator: torch.Generator, std: float
) -> None:
    if name.endswith("bias"):
        data.zero_()
    elif data.ndim == 1 and "Norm" in type(module).__name__:
        data.fill_(0.0 if _is_offset_norm(module) else 1.0)
    else:
        fan_in = data[0].numel() if data.ndim > 1 else data.numel()
        data.normal_(0.0, min(std, fan_in**-0.5), generator=generator)


def _is_offset_norm(module: nn.Module) -> bool:
    """Gemma 3's RMSNorm scales by (1 + weight): its neutral weight is 0, not 1 (Gemma 4's
    scales by the weight itself)."""
    name = type(module).__name__
    return name.startswith("Gemma3") and "RMSNorm" in name


def _small_text_encoder(config: Mapping[str, Any]) -> dict[str, Any]:
    small = copy.deepcopy(dict(config))
    small["text_config"]["num_hidden_layers"] = SMALL_TEXT_LAYERS
    small["text_config"].pop("layer_types", None)  # derived again from the sliding-window pattern
    small["vision_config"]["num_hidden_layers"] = SMALL_VISION_LAYERS
    return small


def _check_consistent(configs: Mapping[str, Mapping[str, Any]]) -> None:
    """The couplings between components that a wrong config would only reveal on the GPU."""
    text = configs["text_encoder"]["text_config"]
    connectors, transformer = configs["connectors"], configs["transformer"]
    vae, upsampler = configs["vae"], configs["latent_upsampler"]
    couplings = {
        "text num_hidden_layers + 1 == connectors text_proj_in_factor": (
            text["num_hidden_layers"] + 1,
            connectors["text_proj_in_factor"],
        ),
        "text hidden_size == connectors caption_channels": (
            text["hidden_size"],
            connectors["caption_channels"],
        ),
        "connectors caption_channels == transformer caption_channels": (
            connectors["caption_channels"],
            transformer["caption_channels"],
        ),
        "vae latent_channels == transformer in_channels": (
            vae["latent_channels"],
            transformer["in_channels"],
        ),
        "vae latent_channels == upsampler in_channels": (
            vae["latent_channels"],
            upsampler["in_channels"],
        ),
    }
    broken = [f"{rule} ({a} != {b})" for rule, (a, b) in couplings.items() if a != b]
    if broken:
        raise ValueError("inconsistent LTX-2 configs: " + "; ".join(broken))


def _pipeline(
    models: Mapping[str, Any], scheduler: FlowMatchEulerDiscreteScheduler
) -> LTX2Pipeline:
    return LTX2Pipeline(
        scheduler=scheduler,  # type: ignore[arg-type]  # diffusers annotates it with a dummy class
        tokenizer=tiny._tokenizer(),
        processor=None,
        prompt_enhancer=None,
        duration_head=None,
        **models,
    )


def _facts(
    pipeline: LTX2Pipeline,
    upsampler: nn.Module,
    text_encoder: str,
    device: torch.device,
    dtype: torch.dtype,
    seconds: Mapping[str, float],
) -> dict[str, object]:
    models = {name: getattr(pipeline, name) for name in MODEL_NAMES if name != "latent_upsampler"}
    models["latent_upsampler"] = upsampler
    return component_facts(models, text_encoder, device, dtype, seconds)


def _weight_bytes(model: nn.Module) -> int:
    tensors: list[torch.Tensor] = [*model.parameters(), *model.buffers()]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def _synchronize(device: torch.device) -> None:
    """Wait for the device, so that build times measure the work and not its queueing."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
