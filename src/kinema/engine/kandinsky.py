"""The Kandinsky 6 engine: one loaded Kandinsky6TI2VAPipeline (text, or a first frame, to video
and sound), a plan's single stage through it, and the tiny twin kinema builds itself.

The tiny twin's `tokenizer` is a Qwen2Tokenizer where the real checkpoints ship a
Qwen2_5_VLProcessor: building that processor needs torchvision, which a CPU-only install lacks;
the tokenizer serves every text path the pipeline takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from kinema.catalog.plan import GenerationPlan
from kinema.catalog.registry import ModelSpec
from kinema.config import Settings
from kinema.domain import Clip
from kinema.engine import tiny
from kinema.engine.one_call import OneCallRunner, load_one_call, uint8_frames
from kinema.engine.stages import Progress

TINY_DIR_NAME = "tiny-kandinsky-6"
BUILD_VERSION = 1
SEED = 0
QWEN_HIDDEN = 32  # == the transformer's in_text_dim
CLIP_HIDDEN = 16  # == the transformer's in_text_dim2
VIDEO_LATENT = 4
AUDIO_LATENT = 4
MEL_BINS = 8
SAMPLE_RATE = 44_100  # the real timing: 44.1 kHz, mel hop 512, latent hop 1024
MEL_HOP = 512
VOCODER_UPSAMPLE = (8, 8, 8)  # product == MEL_HOP
TEXT_POSITIONS = 4096  # >= max_sequence_length + the 129 template tokens the pipeline crops


def _prompt_template() -> str:
    from diffusers.pipelines.kandinsky6.pipeline_kandinsky6_ti2va import _PROMPT_TEMPLATE

    return str(_PROMPT_TEMPLATE)


def _crop_start() -> int:
    """How many template tokens the pipeline crops off the Qwen encoding (129)."""
    from diffusers.pipelines.kandinsky6.pipeline_kandinsky6_ti2va import _QWEN_CROP_START

    return int(_QWEN_CROP_START)


class KandinskyRunner(OneCallRunner):
    """Kandinsky 6: one pipeline for text and for a first frame, with sound when asked for."""

    def call_args(self, plan: GenerationPlan, progress: Progress) -> dict[str, Any]:
        return {
            **super().call_args(plan, progress),
            "frame_rate": plan.fps,
            "sample_audio": plan.generate_audio,
        }

    def clip(self, plan: GenerationPlan, output: Any) -> Clip:
        frames = uint8_frames(output.frames[0])
        if not plan.generate_audio or output.audio is None:
            return Clip(frames=frames, fps=plan.fps)
        audio = np.clip(np.asarray(output.audio[0], dtype=np.float32), -1.0, 1.0)[np.newaxis]
        rate = int(getattr(self.pipeline, "audio_sample_rate", SAMPLE_RATE))
        return Clip(frames=frames, fps=plan.fps, audio=audio, sample_rate=rate)


def load_kandinsky_engine(spec: ModelSpec, settings: Settings) -> KandinskyRunner:
    """Load `spec`'s weights (building the tiny twin first if it is the tiny model)."""
    from diffusers import Kandinsky6TI2VAPipeline

    return load_one_call(KandinskyRunner, Kandinsky6TI2VAPipeline, spec, settings)


# -- the tiny twin ---------------------------------------------------------------------------------


def ensure_tiny_kandinsky(models_dir: Path) -> Path:
    return tiny.ensure_built(models_dir / TINY_DIR_NAME, BUILD_VERSION, build_tiny_kandinsky)


def build_tiny_kandinsky(destination: Path) -> None:
    tiny.build_atomically(
        destination,
        BUILD_VERSION,
        lambda staging: _tiny_pipeline().save_pretrained(staging, safe_serialization=True),
    )


def _tiny_pipeline() -> Any:
    """The released checkpoints' classes and flags with tiny random weights (after diffusers' own
    tests), the tokenizers and text encoders made here: nothing is downloaded."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Kandinsky6TI2VAPipeline

    tokenizer = _qwen_tokenizer()
    clip_tokenizer = _clip_tokenizer()
    return Kandinsky6TI2VAPipeline(
        text_encoder=tiny.seeded(lambda: _qwen_encoder(tokenizer)),
        tokenizer=tokenizer,
        text_encoder_2=tiny.seeded(lambda: _clip_encoder(clip_tokenizer)),
        tokenizer_2=clip_tokenizer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        transformer=tiny.seeded(_transformer),
        vae=tiny.seeded(_video_vae),
        audio_vae=tiny.seeded(_audio_vae),
        vocoder=tiny.seeded(_vocoder),
    )


# Qwen2.5-VL's special tokens the processor and the pipeline's chat template use.
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Minimal Qwen chat template (what expand_prompts renders through processor.apply_chat_template).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _template_head(byte_tokens: int) -> str:
    """The system text of the pipeline's prompt template less its last `byte_tokens` characters.

    Registered as one added token, it makes the template prefix tokenize to exactly the tokens the
    pipeline crops (129), as the real Qwen tokenizer does, so the crop lands on the first token of
    the user prompt (many short chunks do not: added tokens match leftmost-longest and shift). One
    long exact string, it never matches inside a user prompt."""
    system = _prompt_template().split("<|im_start|>")[1].split("<|im_end|>")[0]
    return system[:-byte_tokens]


def _qwen_tokenizer() -> Any:
    from tokenizers import AddedToken, pre_tokenizers
    from transformers import Qwen2Tokenizer

    # Byte-level BPE with no merges: one token per byte (Qwen2's pre-tokenizer is ByteLevel).
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(QWEN_SPECIALS + alphabet)}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=TEXT_POSITIONS,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIALS[1:]})
    # prefix = <|im_start|> head tail <|im_end|> "\n" <|im_start|> "user\n"
    #       == 3 specials + 1 (head) + len(tail) bytes + 1 + 5 == 129
    tail_bytes = _crop_start() - 3 - 1 - 1 - len("user\n")
    tokenizer.add_tokens([AddedToken(_template_head(tail_bytes), normalized=False, special=False)])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _qwen_encoder(tok: Any) -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": QWEN_HIDDEN,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": TEXT_POSITIONS,
            # mrope_section sums to head_dim / 2 = (32 / 2) / 2 = 8
            "rope_scaling": {"rope_type": "default", "mrope_section": [2, 2, 4]},
            "rope_theta": 1_000_000.0,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": QWEN_HIDDEN,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 28,
            "fullatt_block_indexes": [0],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def _clip_tokenizer() -> Any:
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    # CLIP's BPE marks word ends with "</w>": every byte-level char alone and word-final, no merges.
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    pieces = ["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)]
    vocab = {p: i for i, p in enumerate(pieces)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _clip_encoder(tokenizer: Any) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=CLIP_HIDDEN,
        intermediate_size=32,
        projection_dim=CLIP_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,  # pooled output = hidden state at the first eos
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config).eval()


def _transformer() -> Any:
    """The released checkpoints' flags (ca_rope, cross_gates, fix_modulation, token types)."""
    from diffusers.models.transformers.transformer_kandinsky6 import (
        Kandinsky6Transformer3DModel,
    )

    return Kandinsky6Transformer3DModel(
        in_visual_dim=VIDEO_LATENT,
        out_visual_dim=VIDEO_LATENT,
        in_text_dim=QWEN_HIDDEN,
        in_text_dim2=CLIP_HIDDEN,
        time_dim=16,
        patch_size=(1, 2, 2),
        model_dim=16,
        ff_dim=32,
        num_text_blocks=1,
        num_visual_blocks=2,
        axes_dims=(2, 2, 4),  # head_dim 8 -> 2 video heads
        visual_cond=True,
        in_audio_dim=AUDIO_LATENT,
        out_audio_dim=AUDIO_LATENT,
        model_dim_a=8,  # one audio head: ca_rope needs the audio head size == the video one
        time_dim_a=16,
        ff_dim_a=16,
        audio_freqs_scaling=0.144,
        text_token_padding=True,
        ca_rope=True,
        cross_gates=True,
        fix_modulation=True,
        visual_token_type_num_embeddings=2,
    ).eval()


def _video_vae() -> Any:
    from diffusers.models.autoencoders.autoencoder_kl_hunyuan_video import (
        AutoencoderKLHunyuanVideo,
    )

    # 3 levels: 8x in space, 4x in time, as declared (as in diffusers' own test)
    return AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=VIDEO_LATENT,
        down_block_types=("HunyuanVideoDownBlock3D",) * 3,
        up_block_types=("HunyuanVideoUpBlock3D",) * 3,
        block_out_channels=(8, 8, 8),
        layers_per_block=1,
        norm_num_groups=2,
        mid_block_add_attention=False,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
    ).eval()


def _audio_vae() -> Any:
    from diffusers.models.autoencoders.autoencoder_mmaudio import MMAudioVAE

    return MMAudioVAE(
        mel_bins=MEL_BINS,
        latent_channels=AUDIO_LATENT,
        hidden_channels=8,
        channel_multipliers=(1, 2),  # one 2x temporal up/down, as the real (1, 2, 4)
        layers_per_block=1,
        sample_rate=SAMPLE_RATE,
        n_fft=2048,
        hop_length=MEL_HOP,
    ).eval()


def _vocoder() -> Any:
    from diffusers.models.autoencoders.mmaudio_vocoder import MMAudioVocoder

    return MMAudioVocoder(
        num_mels=MEL_BINS,
        upsample_initial_channel=16,
        upsample_rates=VOCODER_UPSAMPLE,
        upsample_kernel_sizes=tuple(2 * r for r in VOCODER_UPSAMPLE),
        resblock_kernel_sizes=(3,),
        resblock_dilation_sizes=((1,),),
    ).eval()


# -- real-size configs ----------------------------------------------------------------------------

REAL_CONFIGS = Path(__file__).parent / "configs" / "kandinsky-6"
REAL_TRANSFORMERS = {"kandinsky-6": "transformer_lite"}  # Pro's config is kept for its count


def real_size_models(
    transformer: str = "transformer_lite", configs_dir: Path = REAL_CONFIGS
) -> dict[str, torch.nn.Module]:
    """The real-size modules (the transformer from the config named `transformer`), parameters
    on the meta device (no weight memory; buffers real, on the CPU): transformer, video VAE,
    audio VAE, vocoder, Qwen2.5-VL and CLIP encoders."""
    from accelerate import init_empty_weights
    from diffusers.models.autoencoders.autoencoder_kl_hunyuan_video import (
        AutoencoderKLHunyuanVideo,
    )
    from diffusers.models.autoencoders.autoencoder_mmaudio import MMAudioVAE
    from diffusers.models.autoencoders.mmaudio_vocoder import MMAudioVocoder
    from diffusers.models.transformers.transformer_kandinsky6 import (
        Kandinsky6Transformer3DModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
    )

    from kinema.engine.random_init import read_config

    def config(name: str) -> dict[str, Any]:
        return read_config(configs_dir / f"{name}.json")

    with init_empty_weights():
        qwen = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**config("text_encoder")))
        clip = CLIPTextModel(CLIPTextConfig(**config("text_encoder_2")))
        models: dict[str, torch.nn.Module] = {
            "transformer": Kandinsky6Transformer3DModel(**config(transformer)),
            "vae": AutoencoderKLHunyuanVideo(**config("vae")),
            "audio_vae": MMAudioVAE(**config("audio_vae")),
            "vocoder": MMAudioVocoder(**config("vocoder")),
        }
    for encoder in (qwen, clip):
        encoder.tie_weights()  # init_empty_weights re-creates parameters, untying any shared
    return {**models, "text_encoder": qwen.eval(), "text_encoder_2": clip.eval()}


def random_real_pipeline(
    model_id: str,
    device: torch.device,
    dtype: torch.dtype,
    configs_dir: Path = REAL_CONFIGS,
) -> tuple[Any, dict[str, object]]:
    """`model_id` at its real size with random weights made on `device` (the GPU benchmark's),
    and the facts about its components. The tokenizers are the tiny twin's; the encoders keep the
    real vocabularies."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Kandinsky6TI2VAPipeline

    from kinema.engine.random_init import random_pipeline, read_config

    config = read_config(configs_dir / "scheduler.json")
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
    return random_pipeline(
        real_size_models(REAL_TRANSFORMERS[model_id], configs_dir),
        device,
        dtype,
        lambda models: Kandinsky6TI2VAPipeline(
            tokenizer=_qwen_tokenizer(),
            tokenizer_2=_clip_tokenizer(),
            scheduler=scheduler,
            **models,
        ),
    )
