"""The Wan 2.2 family: Wan-AI's video model (no sound) through diffusers' WanPipeline, with
WanImageToVideoPipeline over the same weights for a first frame, and its tiny twin.

TI2V-5B (`wan-2.2`) is one 5B transformer on the Wan 2.2 VAE (16x spatial compression, 4x in
time, patch 2: sizes in steps of 32) at 24 fps; T2V-A14B (`wan-2.2:a14b`) is two 14B experts
(high and low noise, switched at 0.875 of the schedule) on the Wan 2.1 VAE (steps of 16) at 16 fps.
Frames come as 4k+1. Both are trained on 5 s clips (121 and 81 frames): longer is refused rather
than made out of distribution.
"""

from __future__ import annotations

from dataclasses import replace

from kinema.catalog.spec import ModelSpec, StageSpec

# Parameters (counted on the meta device from the configs diffusers' conversion script writes):
# TI2V-5B transformer 5.00B, each A14B expert 14.29B, umt5-xxl encoder 5.68B, Wan 2.2 VAE 0.70B,
# Wan 2.1 VAE 0.13B.
WAN_22 = ModelSpec(
    id="wan-2.2",
    description="Wan 2.2 TI2V-5B: text or a first frame to video, no sound, 1280x704 at 24 fps",
    family="wan",
    pipeline="WanPipeline",
    condition_pipeline="WanImageToVideoPipeline",
    first_frame_only=True,
    weights="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    weights_setting="KINEMA_WEIGHTS (a JSON map of model id to weights)",
    fps=24.0,
    output_sizes={"16:9": (1280, 704), "9:16": (704, 1280)},
    size_multiple=32,
    min_side=256,
    max_side=1280,
    # 720x1280 too (OpenAI's default size): generated at 736x1280, cropped.
    max_pixels=1280 * 720,
    frame_multiple=4,
    min_seconds=1.0,
    max_seconds=5.0,
    frame_rates=(24.0,),
    stages=(StageSpec(steps=50, uses_cfg=True),),
    guidance_range=(1.0, 9.0),
    guidance_default=5.0,
    has_audio=False,
    max_sequence_length=512,
    enhances_prompts=False,
    memory_gb=23.0,
    memory_basis=(
        "computed from parameter counts: 11.4B in bf16 (transformer 5.0B, umt5-xxl 5.7B, VAE "
        "0.7B), weights only; activations at 1280x704 x 121 frames come on top"
    ),
    tiny_twin="tiny-wan-2.2",
)
WAN_22_A14B = replace(
    WAN_22,
    id="wan-2.2:a14b",
    description="Wan 2.2 T2V-A14B: two 14B experts, text to video, no sound, 1280x720 at 16 fps",
    condition_pipeline="",
    weights="Wan-AI/Wan2.2-T2V-A14B-Diffusers",
    lora_family="wan-2.2-a14b",  # another architecture than TI2V-5B: its own LoRAs
    fps=16.0,
    output_sizes={"16:9": (1280, 720), "9:16": (720, 1280)},
    size_multiple=16,
    max_pixels=1280 * 720,
    frame_rates=(16.0,),
    stages=(StageSpec(steps=40, uses_cfg=True),),
    guidance_default=4.0,
    memory_gb=69.0,
    memory_basis=(
        "computed from parameter counts: 34.4B in bf16 (two 14.3B experts, umt5-xxl 5.7B, VAE "
        "0.1B), weights only"
    ),
    tiny_twin="tiny-wan-2.2",
)
TINY_WAN = replace(
    WAN_22,
    id="tiny-wan-2.2",
    description="Wan 2.2 (TI2V) pipelines with tiny random weights built locally: for CPU tests",
    weights="",
    output_sizes={"16:9": (96, 54), "9:16": (54, 96), "1:1": (64, 64)},
    min_side=32,
    stages=(StageSpec(steps=2, uses_cfg=True),),
    max_sequence_length=16,
    memory_gb=None,
    memory_basis="a few MB: runs on a CPU",
)

MODELS = (WAN_22, WAN_22_A14B, TINY_WAN)
