"""Speed and memory features, each switched by one setting and logged in one line.

Every feature is a decision (`decide_*`: pure, from the setting and the hardware, so it is testable
without a GPU) and an application (`apply_*`: a no-op where the hardware cannot use it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kinema.errors import ModelUnavailable

logger = logging.getLogger("kinema.engine.speed")

LARGE_GPU_GB = 60.0  # holds LTX-2 (bf16 transformer + text encoder + VAEs) without offloading
MID_GPU_GB = 20.0  # holds one component at a time: model offload; below: group offload
TILING_PIXELS = 1280 * 720 * 121  # width x height x frames from which VAE decode is tiled
FLASH_3 = "_flash_3"
STEP_CACHES = ("first_block", "mag", "taylorseer")
COMPILE_BACKEND = "inductor"  # tests on a CPU trace with "eager"


@dataclass(frozen=True)
class Hardware:
    """What the speed decisions depend on."""

    device_type: str  # "cuda" | "cpu" | ...
    memory_gb: float | None = None  # total accelerator memory
    capability: tuple[int, int] | None = None  # CUDA compute capability
    flash_3: bool = False  # diffusers can use FlashAttention 3 kernels here

    @property
    def cuda(self) -> bool:
        return self.device_type == "cuda"


def probe(device: torch.device) -> Hardware:
    if device.type != "cuda":
        return Hardware(device.type)
    props = torch.cuda.get_device_properties(device)
    return Hardware(
        "cuda",
        memory_gb=props.total_memory / 1e9,
        capability=(props.major, props.minor),
        flash_3=_flash_3_installed(),
    )


def _flash_3_installed() -> bool:
    try:
        from diffusers.models.attention_dispatch import _CAN_USE_FLASH_ATTN_3
    except ImportError:
        return False
    return bool(_CAN_USE_FLASH_ATTN_3)


def _log(feature: str, value: object, why: str) -> None:
    logger.info("speed: %s = %s (%s)", feature, value, why)


# -- decisions ------------------------------------------------------------------------------------


def decide_offload(setting: str, hw: Hardware) -> str:
    """auto: none on CPU or a GPU of >= 60 GB, model offload from 20 GB, else group offload."""
    if not hw.cuda:
        return "none"
    if setting != "auto":
        return setting
    memory = hw.memory_gb or 0.0
    return "none" if memory >= LARGE_GPU_GB else "model" if memory >= MID_GPU_GB else "group"


def decide_release_text_encoder(setting: str, offload: str, hw: Hardware) -> bool:
    """Move the text encoder off the GPU after encoding (only without offload: offload does it).

    auto: on when the GPU has < 60 GB (there, the encoder's memory is the denoiser's headroom).
    """
    if not hw.cuda or offload != "none" or setting == "off":
        return False
    return setting == "on" or (hw.memory_gb or 0.0) < LARGE_GPU_GB


def decide_compile(setting: str, hw: Hardware) -> bool:
    """auto: on for CUDA (inductor + triton); off on a CPU, where compiling gains nothing."""
    return setting == "on" or (setting == "auto" and hw.cuda)


def decide_attention_backend(setting: str, hw: Hardware) -> str | None:
    """The diffusers backend to set, None to keep the default (torch SDPA).

    auto: FlashAttention 3 on a Hopper GPU (sm 9.x) when its kernels are installed, else SDPA.
    A named backend is set as given (on a CPU only the native ones work).
    """
    if setting not in ("auto", ""):
        return setting
    hopper = hw.capability is not None and hw.capability[0] == 9
    return FLASH_3 if hw.cuda and hopper and hw.flash_3 else None


def decide_vae_tiling(setting: str, width: int, height: int, frames: int) -> bool:
    """auto: tile the VAE decode from 1280x720x121 pixels (a 1080p 5 s clip needs it on any GPU)."""
    return setting == "on" or (setting == "auto" and width * height * frames >= TILING_PIXELS)


# -- applications ---------------------------------------------------------------------------------


def apply_offload(
    pipeline: Any, mode: str, device: torch.device, keep_on_cpu: tuple[str, ...] = ()
) -> str:
    """none: every component on `device` (but `keep_on_cpu`); model: one component at a time on
    the GPU (accelerate hooks); group: leaf-level groups streamed to the GPU as they run."""
    if mode == "model":
        pipeline.enable_model_cpu_offload(device=device)
    elif mode == "group":
        pipeline.enable_group_offload(
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type="leaf_level",
            use_stream=device.type == "cuda",
        )
    else:
        for name, component in pipeline.components.items():
            if isinstance(component, torch.nn.Module):
                component.to("cpu" if name in keep_on_cpu else device)
    kept = f", {', '.join(keep_on_cpu)} on cpu" if keep_on_cpu else ""
    _log("offload", mode, f"on {device}{kept}")
    return mode


def apply_fp8(transformer: Any, enabled: bool, hw: Hardware) -> str:
    """torchao float8 dynamic activations + weights on the transformer blocks' linear layers."""
    if not enabled:
        _log("fp8", "off", "KINEMA_FP8 is false")
        return "off"
    if not hw.cuda:
        _log("fp8", "skipped", f"float8 kernels need a CUDA GPU, this is {hw.device_type}")
        return "skipped"
    try:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            PerRow,
            quantize_,
        )
    except ImportError as exc:
        raise ModelUnavailable(
            "KINEMA_FP8=true needs torchao: `pip install torchao` (a build matching this torch), "
            "or set KINEMA_FP8=false"
        ) from exc
    if hw.capability is not None and hw.capability < (8, 9):
        raise ModelUnavailable(
            f"KINEMA_FP8=true needs a GPU of compute capability 8.9+ (Ada, Hopper); this one is "
            f"{hw.capability[0]}.{hw.capability[1]}: set KINEMA_FP8=false"
        )
    config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    quantize_(transformer, config, filter_fn=_fp8_eligible)
    _log("fp8", "on", "torchao float8 (per-row) on the transformer blocks' linear layers")
    return "on"


def _fp8_eligible(module: torch.nn.Module, name: str) -> bool:
    """Block linears with float8-friendly shapes; LoRA factors and embeddings stay in bf16."""
    if not isinstance(module, torch.nn.Linear) or "lora_" in name:
        return False
    out_features, in_features = module.weight.shape
    return name.startswith("transformer_blocks.") and in_features % 16 == 0 == out_features % 16


def apply_attention_backend(transformer: Any, backend: str | None, hw: Hardware) -> str:
    if backend is None:
        _log("attention", "native", "torch SDPA" + ("" if hw.cuda else " on CPU"))
        return "native"
    try:
        transformer.set_attention_backend(backend)
    except (ValueError, RuntimeError, ImportError) as exc:
        raise ModelUnavailable(
            f"KINEMA_ATTENTION_BACKEND={backend!r} cannot be used here: {exc}"
        ) from exc
    _log("attention", backend, "diffusers attention dispatcher")
    return backend


def step_cache_config(name: str, threshold: float) -> Any:
    """The diffusers cache config for KINEMA_STEP_CACHE (None for "none")."""
    if name == "none":
        return None
    from diffusers import FirstBlockCacheConfig, TaylorSeerCacheConfig

    if name == "first_block":
        return FirstBlockCacheConfig(threshold=threshold)
    if name == "taylorseer":
        return TaylorSeerCacheConfig()
    if name == "mag":
        raise ModelUnavailable(
            "KINEMA_STEP_CACHE=mag needs MagCache ratios calibrated for the model; diffusers ships "
            "none for LTX-2 (and 0.42.1 cannot hook its blocks): use taylorseer or none"
        )
    raise ModelUnavailable(
        f"KINEMA_STEP_CACHE={name!r} is not one of: none, {', '.join(STEP_CACHES)}"
    )


def apply_step_cache(transformer: Any, name: str, threshold: float) -> str:
    config = step_cache_config(name, threshold)
    if config is None:
        _log("step cache", "none", "KINEMA_STEP_CACHE=none")
        return "none"
    try:
        transformer.enable_cache(config)
    except ValueError as exc:  # diffusers has no block metadata for this transformer
        raise ModelUnavailable(
            f"KINEMA_STEP_CACHE={name} is not supported for {type(transformer).__name__} by this "
            f"diffusers ({exc}); use taylorseer or none"
        ) from exc
    detail = f"threshold {threshold}" if name == "first_block" else "diffusers defaults"
    _log("step cache", name, detail)
    return name


def apply_compile(transformer: Any, enabled: bool, cache_dir: Path, fullgraph: bool = True) -> str:
    """Regional compilation: each repeated transformer block compiled once, reused by all of them.

    Inductor's caches (FX graphs, AOT autograd, the triton kernels below them) live in
    `cache_dir`, so a restarted worker loads compiled kernels instead of compiling again. A step
    cache's hooks break the block graph: with one, compile per graph piece (`fullgraph=False`).
    """
    if not enabled:
        _log("compile", "off", "KINEMA_COMPILE")
        return "off"
    cache_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir / "inductor"))
    transformer.compile_repeated_blocks(fullgraph=fullgraph, backend=COMPILE_BACKEND)
    where = os.environ["TORCHINDUCTOR_CACHE_DIR"]
    _log("compile", COMPILE_BACKEND, f"repeated blocks, fullgraph={fullgraph}, cache {where}")
    return COMPILE_BACKEND


def set_vae_tiling(vae: Any, tiled: bool) -> None:
    if tiled:
        vae.enable_tiling()
    else:
        vae.disable_tiling()
