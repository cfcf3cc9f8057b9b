"""What a model (or one preset of it) is, as the plan and the engine read it. Torch-free."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ASPECT_RATIOS = ("16:9", "9:16", "1:1")
FULL_HD_SIZES: Mapping[str, tuple[int, int]] = {
    "16:9": (1920, 1080),
    "9:16": (1080, 1920),
    "1:1": (1080, 1080),
}


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
    # It takes one image, as the first frame, and no other condition (no last frame, no clip to
    # remix or extend).
    first_frame_only: bool = False
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
    # The weights' subfolder holding this preset's transformer when it is not the pipeline's own
    # (LTX-2.5 ships its full model beside the distilled one); "": the pipeline's.
    transformer_subfolder: str = ""
    # Changes to the weights' scheduler config for stages with a spaced schedule (LTX-2.5's
    # repository holds the distilled, unshifted scheduler; its full model wants shifting).
    spaced_scheduler: Mapping[str, object] = field(default_factory=dict)
    # Optional pipeline components left unloaded (what kinema never runs, e.g. LTX-2.5's Gemma 4
    # prompt enhancer and its processor, which needs torchvision).
    unloaded_components: tuple[str, ...] = ()
    # Which engine loads and runs it (kinema.engine.families): "ltx2", "wan".
    family: str = "ltx2"
    # Where its LoRAs live: KINEMA_LORA_DIR/<lora_family>/ (models of one architecture share
    # them; "": its id before any preset suffix).
    lora_family: str = ""
    # The GPU memory the preset needs, and how that figure was found ("measured on …", or
    # "computed from parameter counts …"); None: not known yet.
    memory_gb: float | None = None
    memory_basis: str = ""
    # The tiny model that stands in for it on a CPU (the GPU benchmark's); "": none.
    tiny_twin: str = ""

    @property
    def loras_folder(self) -> str:
        return self.lora_family or self.id.split(":")[0]

    @property
    def two_stage(self) -> bool:
        return len(self.stages) > 1

    @property
    def uses_cfg(self) -> bool:
        return any(stage.uses_cfg for stage in self.stages)

    @property
    def total_steps(self) -> int:
        return sum(stage.num_steps for stage in self.stages)
