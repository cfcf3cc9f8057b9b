"""The `tiny-ltx2` model: every LTX2Pipeline component, tiny configs, seeded random weights.

Built locally (nothing is downloaded) and saved with `save_pretrained`, so it loads like a real
checkpoint. The video VAE keeps the real model's compression (32x in space, 8x in time) and the
audio path its timing (16 kHz, hop 160, 4x latent downsampling), so the pipeline runs every code
path a real job does, on a CPU, in well under a second per clip. Its output is noise.

Like the real LTX-2 repository it also holds a 2x latent upsampler (`latent_upsampler/`) and a
distilled LoRA (`distilled_lora.safetensors`, keyed as Lightricks' own trainer writes them, which
diffusers converts on load), so the two-stage presets run every code path too.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from diffusers.models.autoencoders.autoencoder_kl_ltx2 import AutoencoderKLLTX2Video
from diffusers.models.autoencoders.autoencoder_kl_ltx2_audio import AutoencoderKLLTX2Audio
from diffusers.models.transformers.transformer_ltx2 import LTX2VideoTransformer3DModel
from diffusers.pipelines.ltx2 import LTX2TextConnectors
from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel
from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
from diffusers.schedulers.scheduling_flow_match_euler_discrete import (
    FlowMatchEulerDiscreteScheduler,
)
from diffusers.utils import logging as diffusers_logging
from safetensors.torch import save_file
from torch import nn
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
    Gemma3TextConfig,
    GemmaTokenizer,
    SiglipVisionConfig,
)
from transformers.utils import logging as transformers_logging

from kinema.private_files import make_private_dirs

# The diffusers classes come from their defining modules: type checkers read the names `diffusers`
# itself exports as its placeholder (dummy) classes.

TINY_DIR_NAME = "tiny-ltx2"
# Bump whenever the architecture or weights change: a cached build of another version is rebuilt.
BUILD_VERSION = 4
MARKER = "kinema-tiny.json"
T = TypeVar("T")
V = TypeVar("V", bound=nn.Module)
SEED = 0
UPSAMPLER_DIR = "latent_upsampler"
LORA_FILE = "distilled_lora.safetensors"
LORA_RANK = 4

TEXT_HIDDEN = 32  # Gemma hidden size == the connectors' heads x head_dim
TEXT_LAYERS = 2
VIDEO_LATENT_CHANNELS = 8
AUDIO_LATENT_CHANNELS = 2
MEL_BINS = 8  # the audio VAE downsamples mel bins 4x: 2 latent bins
SAMPLE_RATE = 16_000
MEL_HOP = 160
VOCODER_UPSAMPLE = (4, 4, 10)  # product == MEL_HOP: one vocoder sample per audio sample

SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")
CHARACTERS = "▁abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"
# Gemma 3's chat and image tokens, after the rest so that plain prompts keep their token ids.
TURN_TOKENS = ("<start_of_turn>", "<end_of_turn>")
IMAGE_TOKENS = {
    "boi_token": "<start_of_image>",
    "eoi_token": "<end_of_image>",
    "image_token": "<image_soft_token>",
}
IMAGE_SIZE = 8  # the tiny vision tower's input side
IMAGE_SEQUENCE = 4  # tokens per image (Gemma 3's mm_tokens_per_image)
# Gemma 3's chat format, short: the prompt enhancer renders its system and user turns with it.
CHAT_TEMPLATE = (
    "{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else 'user' }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<start_of_image>{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# Long enough for Lightricks' enhancement system prompt, one token per character here.
TEXT_POSITIONS = 8192


def build_tiny_ltx2(destination: Path) -> None:
    """Build the tiny model into `destination` atomically: a crash never leaves half a model."""
    build_atomically(destination, BUILD_VERSION, _save_tiny_ltx2)


def _save_tiny_ltx2(staging: Path) -> None:
    _tiny_pipeline().save_pretrained(staging, safe_serialization=True)
    seeded(_upsampler).save_pretrained(staging / UPSAMPLER_DIR, safe_serialization=True)
    save_file(seeded(_distilled_lora), str(staging / LORA_FILE), metadata={"format": "pt"})


def build_atomically(destination: Path, version: int, save: Callable[[Path], None]) -> None:
    """`save` a tiny model into a staging folder, then move it to `destination` whole."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    staging.chmod(0o755)
    try:
        with _no_progress_bars():
            save(staging)
        (staging / MARKER).write_text(json.dumps({"version": version}))
        _replace_dir(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Hide the libraries' `Writing model shards` bars while saving: the build is kinema's own
    step, and whoever runs it (the CLI's progress display, a worker's log) says so itself."""
    libraries = (diffusers_logging, transformers_logging)
    enabled = [library.is_progress_bar_enabled() for library in libraries]
    for library in libraries:
        library.disable_progress_bar()
    try:
        yield
    finally:
        for library, was_enabled in zip(libraries, enabled, strict=True):
            if was_enabled:
                library.enable_progress_bar()


def ensure_tiny_ltx2(models_dir: Path) -> Path:
    """The tiny model's directory under `models_dir`, built first if missing or stale."""
    return ensure_built(models_dir / TINY_DIR_NAME, BUILD_VERSION, build_tiny_ltx2)


def ensure_built(destination: Path, version: int, build: Callable[[Path], None]) -> Path:
    """`destination`, built by `build` first if missing or of another version; one process
    builds while others wait."""
    if is_current_build(destination, version):
        return destination
    make_private_dirs(destination.parent)
    with _exclusive(destination.parent / f".{destination.name}.lock"):
        if not is_current_build(destination, version):
            build(destination)
    return destination


def is_current_build(directory: Path, version: int = BUILD_VERSION) -> bool:
    try:
        return json.loads((directory / MARKER).read_text()).get("version") == version
    except (OSError, ValueError):
        return False


def _replace_dir(staging: Path, destination: Path) -> None:
    """Move `staging` to `destination`, setting any older build aside first."""
    if destination.exists():
        stale = destination.with_name(f".{destination.name}.stale-{uuid.uuid4().hex}")
        destination.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    staging.rename(destination)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An inter-process lock (POSIX flock); elsewhere the atomic rename alone keeps builds whole."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def seeded(build: Callable[[], T], seed: int = SEED) -> T:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _tiny_pipeline() -> LTX2Pipeline:
    builders = {
        "text_encoder": _text_encoder,
        "connectors": _connectors,
        "transformer": _transformer,
        "vae": _fitted_video_vae,
        "audio_vae": _audio_vae,
        "vocoder": _vocoder,
    }
    components: dict[str, Any] = {}  # each its own model class
    with torch.random.fork_rng(devices=[]):
        for name, build in builders.items():
            torch.manual_seed(SEED)
            components[name] = build()
    tokenizer = _tokenizer()
    return LTX2Pipeline(
        scheduler=_scheduler(),  # type: ignore[arg-type]  # diffusers annotates it with a dummy class
        tokenizer=tokenizer,
        processor=_processor(tokenizer),
        prompt_enhancer=None,
        duration_head=None,
        **components,
    )


def _pieces() -> list[str]:
    bytes_ = (f"<0x{byte:02X}>" for byte in range(256))
    return [*SPECIAL_TOKENS, *bytes_, *CHARACTERS, *TURN_TOKENS, *IMAGE_TOKENS.values()]


def _token_id(piece: str) -> int:
    return _pieces().index(piece)


def _tokenizer() -> GemmaTokenizer:
    vocab = {piece: index for index, piece in enumerate(_pieces())}
    tokenizer = GemmaTokenizer(
        vocab=vocab,
        merges=[],
        add_bos_token=True,
        model_max_length=TEXT_POSITIONS,
        extra_special_tokens=IMAGE_TOKENS,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(TURN_TOKENS)})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _processor(tokenizer: GemmaTokenizer) -> Gemma3Processor:
    images = Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return Gemma3Processor(
        image_processor=images, tokenizer=tokenizer, image_seq_length=IMAGE_SEQUENCE
    )


def _vocab_size() -> int:
    return len(_pieces())


def _text_encoder() -> Gemma3ForConditionalGeneration:
    text = Gemma3TextConfig(
        vocab_size=_vocab_size(),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=TEXT_POSITIONS,
        sliding_window=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    vision = SiglipVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=2,
    )
    config = Gemma3Config(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        mm_tokens_per_image=IMAGE_SEQUENCE,
        boi_token_index=_token_id(IMAGE_TOKENS["boi_token"]),
        eoi_token_index=_token_id(IMAGE_TOKENS["eoi_token"]),
        image_token_index=_token_id(IMAGE_TOKENS["image_token"]),
    )
    return Gemma3ForConditionalGeneration(config).eval()


def _connectors() -> LTX2TextConnectors:
    return LTX2TextConnectors(
        caption_channels=TEXT_HIDDEN,
        text_proj_in_factor=TEXT_LAYERS + 1,
        video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=TEXT_HIDDEN // 4,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=TEXT_HIDDEN // 4,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
        rope_double_precision=False,
        rope_type="split",
    )


def _transformer(**version_flags: Any) -> LTX2VideoTransformer3DModel:
    """The tiny transformer; `version_flags` turn on a later LTX version's features (LTX-2.5's
    twin: gated attention, prompt modulation, STG-capable attention, …) at the same widths."""
    return LTX2VideoTransformer3DModel(
        in_channels=VIDEO_LATENT_CHANNELS,
        out_channels=VIDEO_LATENT_CHANNELS,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=AUDIO_LATENT_CHANNELS * MEL_BINS // 4,
        audio_out_channels=AUDIO_LATENT_CHANNELS * MEL_BINS // 4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        audio_sampling_rate=SAMPLE_RATE,
        audio_hop_length=MEL_HOP,
        num_layers=2,
        caption_channels=TEXT_HIDDEN,
        rope_double_precision=False,
        rope_type="split",
        **version_flags,
    )


def _video_vae() -> AutoencoderKLLTX2Video:
    """Patch 4 and three 2x spatio-temporal stages: 32x in space, 8x in time, as the real VAE."""
    stages = 3
    return AutoencoderKLLTX2Video(
        latent_channels=VIDEO_LATENT_CHANNELS,
        block_out_channels=(8,) * stages,
        down_block_types=("LTX2VideoDownBlock3D",) * stages,
        decoder_block_out_channels=(8,) * stages,
        layers_per_block=(1,) * (stages + 1),
        decoder_layers_per_block=(1,) * (stages + 1),
        spatio_temporal_scaling=(True,) * stages,
        decoder_spatio_temporal_scaling=(True,) * stages,
        decoder_inject_noise=(False,) * (stages + 1),
        downsample_type=("spatiotemporal",) * stages,
        upsample_type=("spatiotemporal",) * stages,
        upsample_residual=(False,) * stages,
        upsample_factor=(1,) * stages,
        patch_size=4,
        patch_size_t=1,
        decoder_causal=False,
    )


# The tiny VAE is fitted briefly to reconstruct coarse pictures, so an image or clip the tiny model
# is conditioned on shows in its output (a random VAE keeps nothing of its input, and no test
# could tell whether a condition acted). Seconds on a CPU, once per build.
VAE_FIT_STEPS = 80
VAE_FIT_SIZE = (64, 128)  # height, width: 2x4 latent cells


def _fitted_video_vae() -> AutoencoderKLLTX2Video:
    vae = _video_vae()
    data = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-3)
    for step in range(VAE_FIT_STEPS):
        pictures = _coarse_pictures(data, count=2 if step % 2 else 8, frames=9 if step % 2 else 1)
        latents = vae.encode(pictures).latent_dist.mode()
        decoded = vae.decode(latents, torch.zeros(len(pictures)), return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(decoded, pictures)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return vae.eval().requires_grad_(False)


def _coarse_pictures(data: torch.Generator, count: int, frames: int) -> torch.Tensor:
    """Random blocks of colour in [-1, 1], (count, 3, frames, height, width), still in time."""
    height, width = VAE_FIT_SIZE
    cells = torch.rand(count, 3, 2, 4, generator=data) * 2 - 1
    picture = torch.nn.functional.interpolate(cells, size=(height, width), mode="nearest")
    return picture.unsqueeze(2).expand(-1, -1, frames, -1, -1).contiguous()


def _audio_vae() -> AutoencoderKLLTX2Audio:
    """Two 2x stages (4x in time and mel bins); base_channels must be the packed latent width."""
    return AutoencoderKLLTX2Audio(
        base_channels=AUDIO_LATENT_CHANNELS * MEL_BINS // 4,
        output_channels=2,
        ch_mult=(1, 1, 1),
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=2,
        resolution=32,
        latent_channels=AUDIO_LATENT_CHANNELS,
        sample_rate=SAMPLE_RATE,
        mel_hop_length=MEL_HOP,
        mel_bins=MEL_BINS,
    )


def _vocoder() -> LTX2Vocoder:
    """Variance-preserving init: with PyTorch's default one the biases drown the mel input."""
    vocoder = LTX2Vocoder(
        in_channels=2 * MEL_BINS,
        hidden_channels=32,
        out_channels=2,
        upsample_kernel_sizes=[2 * factor for factor in VOCODER_UPSAMPLE],
        upsample_factors=list(VOCODER_UPSAMPLE),
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1]],
        output_sampling_rate=SAMPLE_RATE,
    )
    return audible(vocoder)


def audible(vocoder: V) -> V:
    """A random vocoder's convolutions initialised for audible noise rather than near-silence."""
    for module in vocoder.modules():
        if isinstance(module, nn.Conv1d | nn.ConvTranspose1d):
            nn.init.kaiming_normal_(module.weight, a=0.1)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return vocoder


def _scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        shift_terminal=0.1,
    )


def _upsampler() -> LTX2LatentUpsamplerModel:
    """2x in space on the tiny VAE's latents (GroupNorm needs 32 middle channels)."""
    return LTX2LatentUpsamplerModel(
        in_channels=VIDEO_LATENT_CHANNELS,
        mid_channels=32,
        num_blocks_per_stage=1,
        dims=3,
        spatial_upsample=True,
        temporal_upsample=False,
        rational_spatial_scale=2.0,
    )


def _distilled_lora() -> dict[str, torch.Tensor]:
    """Rank-4 LoRA pairs for every linear layer of the tiny transformer's blocks."""
    return lora_pairs(_transformer())


def lora_pairs(transformer: nn.Module) -> dict[str, torch.Tensor]:
    """Rank-4 LoRA pairs for every linear layer of `transformer`'s blocks.

    Keys follow Lightricks' trainer (`diffusion_model.<module>.lora_A.weight` / `lora_B.weight`),
    the format of the released `ltx-2-19b-distilled-lora-384.safetensors`; diffusers' LTX-2 LoRA
    loader converts them to `transformer.<module>...`. B is non-zero: the LoRA changes the output.
    """
    tensors: dict[str, torch.Tensor] = {}
    for name, module in transformer.named_modules():
        if name.startswith("transformer_blocks.") and isinstance(module, nn.Linear):
            out_features, in_features = module.weight.shape
            prefix = f"diffusion_model.{name}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(LORA_RANK, in_features) * 0.1
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(out_features, LORA_RANK) * 0.1
    return tensors
