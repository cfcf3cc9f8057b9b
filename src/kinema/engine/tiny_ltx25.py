"""The tiny twin of LTX-2.5, built locally in the layout of `Lightricks/LTX-2.5-Diffusers`: a
Gemma 4 text encoder, the 2.3/2.5 transformer flags (gated attention, prompt modulation,
STG-capable attention, no FFN bias, keyframe position embedding), per-modality connectors, the
four-stage VAE, the vocoder with bandwidth extension, a duration head and a Gemma 4 prompt
enhancer; the distilled transformer as the pipeline's own and the full one in
`transformer_full/`, the distilled scheduler, a 2x latent upsampler and the distilled LoRA beside
them. Random weights: noise with sound, for CPU tests of every path LTX-2.5 takes. The tokenizer
is the LTX-2 twin's.
"""

from __future__ import annotations

from pathlib import Path

from diffusers.models.autoencoders.autoencoder_kl_ltx2 import AutoencoderKLLTX2Video
from diffusers.models.transformers.transformer_ltx2 import LTX2VideoTransformer3DModel
from diffusers.pipelines.ltx2 import LTX2DurationHead, LTX2TextConnectors
from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline
from diffusers.pipelines.ltx2.vocoder import LTX2VocoderWithBWE
from diffusers.schedulers.scheduling_flow_match_euler_discrete import (
    FlowMatchEulerDiscreteScheduler,
)
from safetensors.torch import save_file
from transformers import (
    Gemma4Config,
    Gemma4ForConditionalGeneration,
    Gemma4UnifiedConfig,
    Gemma4UnifiedForConditionalGeneration,
)

from kinema.engine import tiny

TINY_DIR_NAME = "tiny-ltx-2.5"
BUILD_VERSION = 2
FULL_TRANSFORMER_DIR = "transformer_full"
VIDEO_WIDTH = 16  # the transformer's video inner width (2 heads x 8) == the connectors' output
AUDIO_WIDTH = 8  # its audio inner width (2 heads x 4)
FULL_MODEL_SEED = 1  # the full transformer differs from the distilled one


def ensure_tiny_ltx25(models_dir: Path) -> Path:
    """The tiny LTX-2.5 under `models_dir`, built first if missing or stale."""
    return tiny.ensure_built(models_dir / TINY_DIR_NAME, BUILD_VERSION, build_tiny_ltx25)


def build_tiny_ltx25(destination: Path) -> None:
    tiny.build_atomically(destination, BUILD_VERSION, _save)


def _save(staging: Path) -> None:
    _pipeline().save_pretrained(staging, safe_serialization=True)
    full = tiny.seeded(_transformer, FULL_MODEL_SEED)
    full.save_pretrained(staging / FULL_TRANSFORMER_DIR, safe_serialization=True)
    upsampler = tiny.seeded(tiny._upsampler)
    upsampler.save_pretrained(staging / tiny.UPSAMPLER_DIR, safe_serialization=True)
    lora = tiny.lora_pairs(full)
    save_file(lora, str(staging / tiny.LORA_FILE), metadata={"format": "pt"})


def _pipeline() -> LTX2Pipeline:
    return LTX2Pipeline(
        scheduler=_scheduler(),  # type: ignore[arg-type]  # diffusers annotates it with a dummy class
        tokenizer=tiny._tokenizer(),
        processor=None,  # the real one needs torchvision
        prompt_enhancer=tiny.seeded(_prompt_enhancer),
        text_encoder=tiny.seeded(_text_encoder),
        connectors=tiny.seeded(_connectors),
        transformer=tiny.seeded(_transformer),
        vae=tiny.seeded(_video_vae),
        audio_vae=tiny.seeded(tiny._audio_vae),
        vocoder=tiny.seeded(_vocoder),
        duration_head=tiny.seeded(_duration_head),
    )


def _scheduler() -> FlowMatchEulerDiscreteScheduler:
    """The repository's scheduler: the distilled one, unshifted (the full model's stage shifts)."""
    shifting = tiny._scheduler().config
    return FlowMatchEulerDiscreteScheduler.from_config(
        shifting, use_dynamic_shifting=False, shift_terminal=None
    )


def _text_encoder() -> Gemma4UnifiedForConditionalGeneration:
    """A two-layer Gemma 4 (the class LTX-2.5's text encoder has); the pipeline reads its hidden
    states, and the image CRF it picks follows from its model type."""
    text = {
        "vocab_size": tiny._vocab_size(),
        "hidden_size": tiny.TEXT_HIDDEN,
        "intermediate_size": 64,
        "num_hidden_layers": tiny.TEXT_LAYERS,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "global_head_dim": 16,
        "num_global_key_value_heads": 1,
        "attention_k_eq_v": True,
        "sliding_window": 64,
        "max_position_embeddings": tiny.TEXT_POSITIONS,
        "layer_types": ["sliding_attention", "full_attention"],
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    }
    vision = {
        "patch_size": 2,
        "pooling_kernel_size": 1,
        "mm_embed_dim": 16,
        "mm_posemb_size": 16,
        "output_proj_dims": tiny.TEXT_HIDDEN,
    }
    config = Gemma4UnifiedConfig(text_config=text, vision_config=vision, audio_config=None)
    return Gemma4UnifiedForConditionalGeneration(config).eval()


def _prompt_enhancer() -> Gemma4ForConditionalGeneration:
    """A one-layer Gemma 4 in the prompt enhancer's slot, as the real repository has one (kinema
    leaves it unloaded)."""
    text = {
        "vocab_size": tiny._vocab_size(),
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 8,
        "global_head_dim": 8,
        "layer_types": ["full_attention"],
        "max_position_embeddings": 128,
        "sliding_window": 32,
        "vocab_size_per_layer_input": tiny._vocab_size(),
        "hidden_size_per_layer_input": 4,
    }
    vision = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "patch_size": 2,
        "pooling_kernel_size": 1,
        "position_embedding_size": 16,
        "max_position_embeddings": 64,
    }
    config = Gemma4Config(text_config=text, vision_config=vision, audio_config=None)
    return Gemma4ForConditionalGeneration(config).eval()


def _connectors() -> LTX2TextConnectors:
    """Per-modality projections (text to the video and the audio widths), gated attention."""
    return LTX2TextConnectors(
        caption_channels=tiny.TEXT_HIDDEN,
        text_proj_in_factor=tiny.TEXT_LAYERS + 1,
        video_connector_num_attention_heads=2,
        video_connector_attention_head_dim=VIDEO_WIDTH // 2,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        video_gated_attn=True,
        audio_connector_num_attention_heads=2,
        audio_connector_attention_head_dim=AUDIO_WIDTH // 2,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        audio_gated_attn=True,
        connector_rope_base_seq_len=32,
        rope_double_precision=False,
        rope_type="split",
        per_modality_projections=True,
        video_hidden_dim=VIDEO_WIDTH,
        audio_hidden_dim=AUDIO_WIDTH,
        proj_bias=True,
    )


def _transformer() -> LTX2VideoTransformer3DModel:
    """The LTX-2 twin's transformer with the 2.3/2.5 flags (its video and audio widths are
    VIDEO_WIDTH and AUDIO_WIDTH)."""
    return tiny._transformer(
        gated_attn=True,
        cross_attn_mod=True,
        audio_gated_attn=True,
        audio_cross_attn_mod=True,
        use_prompt_embeddings=False,
        perturbed_attn=True,
        ff_bias=False,
        use_keyframes_abs_pos_embedding=True,
    )


def _video_vae() -> AutoencoderKLLTX2Video:
    """The 2.3/2.5 layout: four encoder stages (spatial, temporal, two spatio-temporal), four
    decoder stages back, no residual upsampling, zero padding; 32x in space, 8x in time."""
    return AutoencoderKLLTX2Video(
        latent_channels=tiny.VIDEO_LATENT_CHANNELS,
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("LTX2VideoDownBlock3D",) * 4,
        decoder_block_out_channels=(8, 16, 16, 32),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True,) * 4,
        decoder_spatio_temporal_scaling=(True,) * 4,
        decoder_inject_noise=(False,) * 5,
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
        upsample_residual=(False,) * 4,
        upsample_factor=(2, 2, 1, 2),
        patch_size=4,
        patch_size_t=1,
        decoder_causal=False,
        encoder_spatial_padding_mode="zeros",
        decoder_spatial_padding_mode="zeros",
        spatial_compression_ratio=32,
        temporal_compression_ratio=8,
    )


def _vocoder() -> LTX2VocoderWithBWE:
    """16 kHz from the mel frames (4·4·10 == the mel hop), then bandwidth extension to 48 kHz
    (a second mel at hop 80, upsampled 6·5·8 == 240 == 80 x 3)."""
    vocoder = LTX2VocoderWithBWE(
        in_channels=2 * tiny.MEL_BINS,
        hidden_channels=32,
        out_channels=2,
        upsample_kernel_sizes=[8, 8, 20],
        upsample_factors=list(tiny.VOCODER_UPSAMPLE),
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1]],
        act_fn="snakebeta",
        antialias=True,
        final_act_fn=None,
        final_bias=False,
        bwe_in_channels=2 * tiny.MEL_BINS,
        bwe_hidden_channels=32,
        bwe_out_channels=2,
        bwe_upsample_kernel_sizes=[12, 11, 16],  # an odd stride wants an odd kernel (2s + 1)
        bwe_upsample_factors=[6, 5, 8],
        bwe_resnet_kernel_sizes=[3],
        bwe_resnet_dilations=[[1]],
        bwe_act_fn="snakebeta",
        bwe_antialias=True,
        bwe_final_act_fn=None,
        bwe_final_bias=False,
        filter_length=64,
        hop_length=80,
        window_length=64,
        num_mel_channels=tiny.MEL_BINS,
        input_sampling_rate=tiny.SAMPLE_RATE,
        output_sampling_rate=48_000,
    )
    return tiny.audible(vocoder)


def _duration_head() -> LTX2DurationHead:
    return LTX2DurationHead(
        video_cross_attention_dim=VIDEO_WIDTH,
        audio_cross_attention_dim=AUDIO_WIDTH,
        pooler_hidden_dim=8,
        num_queries=1,
        num_pooler_heads=2,
        mlp_hidden_dim=8,
    )
