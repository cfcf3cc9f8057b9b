"""The Kandinsky 6 family: Kandinsky Lab's text- or image-to-video-and-audio model through
diffusers' Kandinsky6TI2VAPipeline (one pipeline takes a first frame too), and its tiny twin.

Video and 44.1 kHz mono sound; frames come as 4k+1, sizes in steps of 16 (patch 2 over an 8x
VAE), 24 fps. Every released checkpoint is trained on 5 s clips (the repos are named `-5s-`):
longer is refused rather than made out of distribution.
"""

from __future__ import annotations

from dataclasses import replace

from kinema.catalog.spec import ModelSpec, StageSpec

KANDINSKY_6 = ModelSpec(
    id="kandinsky-6",
    description="Kandinsky 6 Lite: text or a first frame to video with sound, 768x512 at 24 fps",
    family="kandinsky",
    pipeline="Kandinsky6TI2VAPipeline",
    condition_pipeline="Kandinsky6TI2VAPipeline",  # the same pipeline, given `image`
    first_frame_only=True,
    weights="kandinskylab/Kandinsky-6.0-Lite-5s-Diffusers",
    weights_setting="KINEMA_WEIGHTS (a JSON map of model id to weights)",
    fps=24.0,
    output_sizes={"16:9": (768, 512), "9:16": (512, 768), "1:1": (640, 640)},
    size_multiple=16,
    min_side=128,
    max_side=1024,
    max_pixels=1024 * 768,
    frame_multiple=4,
    min_seconds=1.0,
    max_seconds=5.0,
    frame_rates=(24.0,),
    stages=(StageSpec(steps=50, uses_cfg=True),),
    guidance_range=(1.0, 9.0),
    guidance_default=5.0,
    max_sequence_length=1024,
    enhances_prompts=False,
    memory_gb=25.0,
    memory_basis=(
        "computed from parameter counts: 12.3B in bf16 (Lite transformer 3.2B, Qwen2.5-VL 8.3B, "
        "CLIP 0.1B, VAEs and vocoder 0.7B), weights only; its processor needs torchvision"
    ),
    tiny_twin="tiny-kandinsky-6",
)
TINY_KANDINSKY = replace(
    KANDINSKY_6,
    id="tiny-kandinsky-6",
    description="Kandinsky 6 pipeline with tiny random weights built locally: for CPU tests",
    weights="",
    output_sizes={"16:9": (96, 54), "9:16": (54, 96), "1:1": (64, 64)},
    min_side=16,
    stages=(StageSpec(steps=2, uses_cfg=True),),
    max_sequence_length=16,
    memory_gb=None,
    memory_basis="a few MB: runs on a CPU",
)

MODELS = (KANDINSKY_6, TINY_KANDINSKY)
