"""The LTX-2 family: Lightricks' audio+video model through diffusers' LTX2Pipeline, its presets,
and the tiny twin kinema builds to test every code path on a CPU."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kinema.catalog.spec import FULL_HD_SIZES, ModelSpec, StageSpec

# The distilled LTX-2 schedules (diffusers.pipelines.ltx2.utils), copied: the API is torch-free.
DISTILLED_SIGMAS = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875)
REFINE_SIGMAS = (0.909375, 0.725, 0.421875)


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
    # Off: diffusers converts LTX-2.0 with perturbed_attn=False, where STG changes nothing yet
    # costs a transformer pass per guided step (the pipeline's default scale is 1).
    stg_scale=0.0,
    audio_stg_scale=0.0,
    memory_gb=69.0,
    memory_basis=(
        "computed from parameter counts: 34.3B in bf16 (transformer 18.9B, Gemma 3 12.2B, "
        "connectors 1.4B, VAEs, vocoder, upsampler 0.5B), weights only; with "
        "KINEMA_RELEASE_TEXT_ENCODER Gemma waits on the CPU and 44 GB stay on the GPU"
    ),
    tiny_twin="tiny-ltx2",
)
LTX_2_QUALITY = replace(
    LTX_2,
    id="ltx-2:quality",
    description="LTX-2 quality: full model with CFG (40 steps at half size), 2x upsample, refine",
    stages=QUALITY_STAGES,
    tiny_twin="tiny-ltx2:quality",
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
    memory_gb=None,
    memory_basis="a few MB: runs on a CPU",
)
TINY_LTX2_QUALITY = replace(
    TINY_LTX2,
    id="tiny-ltx2:quality",
    description="The tiny model's twin of LTX-2 quality: CFG first stage, 2x upsample, refine",
    stages=(StageSpec(steps=4, scale=0.5, uses_cfg=True), FAST_STAGES[1]),
)

# LTX-2.3 (22B): the same classes load it; diffusers' call defaults are its own (no LTX-2.0
# legacy arguments), and its transformer runs STG for real. Loaded through the same code as
# LTX-2.0, not yet run on its real weights here.
DISTILLED_CHECKPOINT_STAGES = tuple(replace(stage, distilled_lora=False) for stage in FAST_STAGES)
LTX_23 = replace(
    LTX_2,
    id="ltx-2.3",
    description="LTX-2.3 fast: the distilled 22B checkpoint, 8 steps at half size, 2x upsample, "
    "3-step refine",
    weights="diffusers/LTX-2.3-Distilled-Diffusers",
    weights_setting="KINEMA_WEIGHTS (a JSON map of model id to weights)",
    stages=DISTILLED_CHECKPOINT_STAGES,
    upsampler_weights="",  # its weights' own latent_upsampler/, wherever they are
    lora_weights="",
    lora_file=None,
    extra_call_args={},
    stg_scale=None,
    audio_stg_scale=None,
    memory_gb=72.0,
    memory_basis=(
        "computed from parameter counts: 35.8B in bf16 (transformer 19.0B, connectors 3.2B, "
        "Gemma 3 12.2B, VAEs, vocoder with BWE and upsampler 1.4B together), weights only"
    ),
    tiny_twin="tiny-ltx-2.5",
)
LTX_23_QUALITY = replace(
    LTX_23,
    id="ltx-2.3:quality",
    description="LTX-2.3 quality: the 22B dev model with CFG and STG (40 steps at half size), "
    "2x upsample, distilled-LoRA refine",
    weights="diffusers/LTX-2.3-Diffusers",
    stages=QUALITY_STAGES,
    lora_weights="Lightricks/LTX-2.3",
    lora_file="ltx-2.3-22b-distilled-lora-384-1.1.safetensors",
    tiny_twin="tiny-ltx-2.5:quality",
)

# LTX-2.5: the same classes again, with a Gemma 4 text encoder (image conditions are re-encoded
# at CRF 18, which the pipeline picks from it) and one repository for both presets: the distilled
# transformer is the pipeline's own, the full model sits beside it in `transformer_full/`. Its
# prompt enhancer is a separate Gemma 4 whose processor needs torchvision: not loaded here, so
# `enhance_prompt` is ignored with a note. Not yet run on its real weights here.
LTX_25 = replace(
    LTX_23,
    id="ltx-2.5",
    description="LTX-2.5 fast: the distilled 22B transformer, 8 steps at half size, 2x upsample, "
    "3-step refine",
    weights="Lightricks/LTX-2.5-Diffusers",
    enhances_prompts=False,
    unloaded_components=("prompt_enhancer", "processor", "duration_head"),
    memory_gb=71.0,
    memory_basis=(
        "computed from parameter counts: 35.5B in bf16 (transformer 19.0B, connectors 3.2B, "
        "Gemma 4 12.0B, VAEs, vocoder with BWE, upsampler 0.5B), weights only"
    ),
    tiny_twin="tiny-ltx-2.5",
)
# Lightricks' recipe for the full model: 30 steps, CFG 3 (audio 7), STG 1, modality guidance 3,
# guidance rescale 0.7 (diffusers' call defaults), on the shifted schedule; then the distilled
# LoRA refines on the distilled schedule.
LTX_25_QUALITY = replace(
    LTX_25,
    id="ltx-2.5:quality",
    description="LTX-2.5 quality: the full 22B model with CFG, STG and modality guidance "
    "(30 steps at half size), 2x upsample, distilled-LoRA refine",
    stages=(StageSpec(steps=30, scale=0.5, uses_cfg=True), FAST_STAGES[1]),
    guidance_default=3.0,
    transformer_subfolder="transformer_full",
    spaced_scheduler={"use_dynamic_shifting": True, "shift_terminal": 0.1},
    lora_file="ltx-2.5-22b-distilled-lora-450-bf16.safetensors",  # beside the pipeline's
    tiny_twin="tiny-ltx-2.5:quality",
)
# What the LTX-2 family's tiny twins share: their sizes, prompt length and footprint.
TINY_SHAPE: dict[str, Any] = {
    "weights": "",
    "output_sizes": TINY_LTX2.output_sizes,
    "min_side": TINY_LTX2.min_side,
    "max_side": TINY_LTX2.max_side,
    "max_pixels": TINY_LTX2.max_pixels,
    "max_sequence_length": TINY_LTX2.max_sequence_length,
    # two layers: spatio-temporal guidance perturbs the last one, as block 28 of 48 does for real
    "extra_call_args": {"spatio_temporal_guidance_blocks": [1]},
    "memory_gb": None,
    "memory_basis": TINY_LTX2.memory_basis,
}
TINY_LTX25 = replace(
    LTX_25,
    id="tiny-ltx-2.5",
    description="The LTX-2.5 layout (Gemma 4, gated attention, per-modality connectors, "
    "bandwidth-extension vocoder) with tiny random weights built locally: for CPU tests",
    **TINY_SHAPE,
)
TINY_LTX25_QUALITY = replace(
    LTX_25_QUALITY,
    id="tiny-ltx-2.5:quality",
    description="The tiny twin of LTX-2.5 quality: its full transformer with CFG, STG and "
    "modality guidance, 2x upsample, distilled-LoRA refine",
    lora_file="distilled_lora.safetensors",
    stages=(StageSpec(steps=3, scale=0.5, uses_cfg=True), FAST_STAGES[1]),
    **TINY_SHAPE,
)

MODELS = (
    LTX_2,
    LTX_2_QUALITY,
    LTX_23,
    LTX_23_QUALITY,
    LTX_25,
    LTX_25_QUALITY,
    TINY_LTX2,
    TINY_LTX2_QUALITY,
    TINY_LTX25,
    TINY_LTX25_QUALITY,
)
