"""The Wan 2.2 engine: one loaded WanPipeline (and, for a first frame, WanImageToVideoPipeline over
the same components), a plan's single stage through it (`one_call`), and the tiny twin.

Wan makes video only: a clip from here has no sound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kinema.catalog.plan import GenerationPlan
from kinema.catalog.registry import ModelSpec
from kinema.config import Settings
from kinema.engine import components, tiny
from kinema.engine.one_call import OneCallRunner, load_one_call

TINY_DIR_NAME = "tiny-wan-2.2"
BUILD_VERSION = 1
TINY_TEXT_WIDTH = 32  # the text encoder's d_model == the transformer's text_dim
TINY_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-"


class WanRunner(OneCallRunner):
    """Wan 2.2: WanPipeline for text, WanImageToVideoPipeline over the same components (built on
    first use, no second copy of the weights) for a first frame."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._conditioned: Any | None = None

    def pipeline_for(self, plan: GenerationPlan) -> Any:
        if not plan.conditions:
            return self.pipeline
        if self._conditioned is None:
            self._conditioned = components.condition_pipeline(self.spec, self.pipeline)
        return self._conditioned


def load_wan_engine(spec: ModelSpec, settings: Settings) -> WanRunner:
    """Load `spec`'s weights (building the tiny twin first if it is the tiny model)."""
    from diffusers import WanPipeline

    return load_one_call(WanRunner, WanPipeline, spec, settings)


# -- the tiny twin ---------------------------------------------------------------------------------


def ensure_tiny_wan(models_dir: Path) -> Path:
    """The tiny Wan 2.2 (TI2V layout) under `models_dir`, built first if missing or stale."""
    return tiny.ensure_built(models_dir / TINY_DIR_NAME, BUILD_VERSION, build_tiny_wan)


def build_tiny_wan(destination: Path) -> None:
    tiny.build_atomically(
        destination,
        BUILD_VERSION,
        lambda staging: _tiny_wan_pipeline().save_pretrained(staging, safe_serialization=True),
    )


def _tiny_wan_pipeline() -> Any:
    """The real classes with tiny random weights (as diffusers' own TI2V-5B tests build them),
    the tokenizer and text encoder made here: nothing is downloaded."""
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )

    vae = tiny.seeded(
        lambda: AutoencoderKLWan(
            base_dim=3,
            z_dim=48,
            in_channels=12,
            out_channels=12,
            is_residual=True,
            patch_size=2,
            latents_mean=[0.0] * 48,
            latents_std=[1.0] * 48,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            scale_factor_spatial=16,
            scale_factor_temporal=4,
            temperal_downsample=[False, True, True],
        )
    )
    transformer = tiny.seeded(
        lambda: WanTransformer3DModel(
            patch_size=(1, 2, 2),  # the pipeline's per-token timesteps assume 2x2 patches
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=48,
            out_channels=48,
            text_dim=TINY_TEXT_WIDTH,
            freq_dim=256,
            ffn_dim=32,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=1024,  # the real default: shorter tables fail on large grids
        )
    )
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0
    )
    return WanPipeline(
        tokenizer=_tiny_tokenizer(),
        text_encoder=tiny.seeded(_tiny_text_encoder),
        vae=vae,
        scheduler=scheduler,
        transformer=transformer,
        expand_timesteps=True,  # the TI2V-5B layout
    )


def _tiny_tokenizer() -> Any:
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(character, -3.0) for character in TINY_CHARACTERS]
    vocab += [("\u2581" + character, -2.5) for character in TINY_CHARACTERS]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


def _tiny_text_encoder() -> Any:
    from transformers import UMT5Config, UMT5EncoderModel

    size = 4 + 2 * len(TINY_CHARACTERS)
    config = UMT5Config(
        vocab_size=size,
        d_model=TINY_TEXT_WIDTH,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return UMT5EncoderModel(config).eval()


# -- real-size configs ----------------------------------------------------------------------------

REAL_CONFIGS = Path(__file__).parent / "configs" / "wan-2.2"
REAL_TRANSFORMERS = {
    "wan-2.2": "transformer_ti2v_5b.json",
    "wan-2.2:a14b": "transformer_t2v_a14b.json",
}
REAL_VAES = {"wan-2.2": "vae_2_2.json", "wan-2.2:a14b": "vae_2_1.json"}
TWO_EXPERTS = {"wan-2.2:a14b"}
EXPERT_BOUNDARY = 0.875  # A14B: the high-noise expert runs until this fraction of the schedule
# Wan-Video/Wan2.2 wan/configs: sample_shift of TI2V-5B and of T2V-A14B.
FLOW_SHIFTS = {"wan-2.2": 5.0, "wan-2.2:a14b": 12.0}


def real_size_models(model_id: str, configs_dir: Path = REAL_CONFIGS) -> dict[str, torch.nn.Module]:
    """`model_id`'s real-size modules, parameters on the meta device (no weight memory; buffers
    such as RoPE tables real, on the CPU): transformer (A14B: and its second, low-noise expert
    `transformer_2`), VAE and text encoder."""
    from accelerate import init_empty_weights

    # From their defining modules: type checkers read `diffusers`' own names as placeholders.
    from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
    from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from kinema.engine.random_init import read_config

    def config(name: str) -> dict[str, Any]:
        return read_config(configs_dir / name)

    experts = ["transformer", "transformer_2"] if model_id in TWO_EXPERTS else ["transformer"]
    with init_empty_weights():
        models: dict[str, torch.nn.Module] = {
            name: WanTransformer3DModel(**config(REAL_TRANSFORMERS[model_id])) for name in experts
        }
        models["vae"] = AutoencoderKLWan(**config(REAL_VAES[model_id]))
        encoder = UMT5EncoderModel(UMT5Config(**config("text_encoder.json")))
    encoder.tie_weights()  # init_empty_weights re-creates the shared embedding
    models["text_encoder"] = encoder
    return models


def random_real_pipeline(
    model_id: str,
    device: torch.device,
    dtype: torch.dtype,
    configs_dir: Path = REAL_CONFIGS,
) -> tuple[Any, dict[str, object]]:
    """`model_id` at its real size with random weights made on `device` (the GPU benchmark's),
    and the facts about its components. The tokenizer is the tiny twin's; the text encoder keeps
    the real vocabulary."""
    from diffusers import UniPCMultistepScheduler, WanPipeline

    from kinema.engine.random_init import random_pipeline

    two_experts = model_id in TWO_EXPERTS
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=FLOW_SHIFTS[model_id]
    )
    return random_pipeline(
        real_size_models(model_id, configs_dir),
        device,
        dtype,
        lambda models: WanPipeline(
            tokenizer=_tiny_tokenizer(),
            scheduler=scheduler,
            boundary_ratio=EXPERT_BOUNDARY if two_experts else None,
            expand_timesteps=not two_experts,  # TI2V-5B's per-token timesteps
            **models,
        ),
    )
