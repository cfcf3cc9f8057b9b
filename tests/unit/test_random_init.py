"""The real-size LTX-2 configs and the random-weight builder, on a CPU: no real-size weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import LTX2Pipeline
from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

from kinema.engine import tiny
from kinema.engine.random_init import (
    CONFIG_NAMES,
    CONFIGS_DIR,
    MODEL_NAMES,
    build_random_ltx2,
    count_parameters,
    empty_ltx2,
    empty_model,
    load_configs,
    materialize,
)

BILLION = 1e9
FACT_KEYS = {
    "text_encoder",
    "device",
    "dtype",
    "parameters",
    "parameters_total",
    "weights_gib",
    "build_seconds",
}


@pytest.fixture(scope="module")
def real() -> dict[str, torch.nn.Module]:
    return empty_ltx2(CONFIGS_DIR)


def test_every_component_has_a_config_naming_its_class() -> None:
    names = {path.stem for path in CONFIGS_DIR.glob("*.json")}
    assert names == set(CONFIG_NAMES)
    assert (CONFIGS_DIR / "README.md").is_file()
    for name in CONFIG_NAMES:
        config = json.loads((CONFIGS_DIR / f"{name}.json").read_text())
        assert config.get("_class_name") or config.get("architectures"), name


def test_the_configs_build_every_model_without_weights(real: dict[str, torch.nn.Module]) -> None:
    assert set(real) == set(MODEL_NAMES)
    for name, model in real.items():
        assert {param.device.type for param in model.parameters()} == {"meta"}, name


def test_parameter_counts_match_the_published_sizes(real: dict[str, torch.nn.Module]) -> None:
    counts = {name: count_parameters(model) for name, model in real.items()}
    transformer = real["transformer"]
    audio = sum(p.numel() for n, p in transformer.named_parameters() if "audio" in n)

    # LTX-2 paper: 19B = 14B video + 5B audio (the audio stream and the audio<->video attention).
    assert counts["transformer"] == 18_876_174_592
    assert 4.5 * BILLION < audio < 6 * BILLION
    assert 12.5 * BILLION < counts["transformer"] - audio < 14.5 * BILLION
    # Gemma-3 12B (text 11.77B + SigLIP vision tower 0.42B; the output head is the tied embedding).
    assert 11.5 * BILLION < counts["text_encoder"] < 12.5 * BILLION
    # ltx-2-spatial-upscaler-x2-1.0.safetensors is about 1 GB in bf16.
    assert 0.45 * BILLION < counts["latent_upsampler"] < 0.55 * BILLION
    assert 1.0 * BILLION < counts["vae"] < 1.5 * BILLION
    assert 1.3 * BILLION < counts["connectors"] < 1.5 * BILLION
    assert counts["audio_vae"] < 0.1 * BILLION
    assert counts["vocoder"] < 0.1 * BILLION


def test_the_text_encoder_has_the_real_vocabulary_tied_to_its_head(
    real: dict[str, torch.nn.Module],
) -> None:
    encoder = real["text_encoder"]
    embedding = encoder.get_input_embeddings().weight
    assert tuple(embedding.shape) == (262_208, 3840)
    assert encoder.lm_head.weight is embedding


def test_the_small_text_encoder_keeps_the_real_widths() -> None:
    small = empty_ltx2(CONFIGS_DIR, text_encoder="small")
    text = small["text_encoder"].config.text_config

    assert (text.num_hidden_layers, text.hidden_size, text.vocab_size) == (2, 3840, 262_208)
    assert small["connectors"].text_proj_in.in_features == 3 * 3840
    assert count_parameters(small["text_encoder"]) < 2 * BILLION


def test_inconsistent_configs_are_refused(tmp_path: Path) -> None:
    configs = tmp_path / "ltx2"
    configs.mkdir()
    for name in CONFIG_NAMES:
        (configs / f"{name}.json").write_text((CONFIGS_DIR / f"{name}.json").read_text())
    connectors = json.loads((configs / "connectors.json").read_text())
    (configs / "connectors.json").write_text(json.dumps({**connectors, "caption_channels": 4096}))

    with pytest.raises(ValueError, match="caption_channels"):
        load_configs(configs)
    with pytest.raises(ValueError, match="text_encoder"):
        load_configs(CONFIGS_DIR, text_encoder="huge")


def test_materialize_allocates_in_the_target_dtype_keeps_ties_and_stays_sane() -> None:
    encoder = empty_model("text_encoder", tiny._text_encoder().config.to_dict())
    generator = torch.Generator().manual_seed(0)

    encoder = materialize(
        encoder, torch.device("cpu"), torch.bfloat16, generator, cast_buffers=False
    )

    params = list(encoder.parameters())
    assert {(p.device.type, p.dtype) for p in params} == {("cpu", torch.bfloat16)}
    assert encoder.lm_head.weight is encoder.get_input_embeddings().weight
    assert all(torch.isfinite(p).all() and p.abs().max() <= 1 for p in params)  # norm scales: 1
    assert all(not p.requires_grad for p in params)
    norm = encoder.model.language_model.norm.weight  # Gemma's (1 + w) RMSNorm: neutral at 0
    assert torch.all(norm == 0)
    rope = dict(encoder.named_buffers())[
        "model.language_model.rotary_emb.sliding_attention_inv_freq"
    ]
    assert rope.dtype == torch.float32


def test_the_builder_runs_from_config_files(tmp_path: Path) -> None:
    """build_random_ltx2 itself, on shrunken copies of the real configs (real ones need a GPU)."""
    configs = _shrunken_configs(tmp_path)

    pipeline, upsampler, facts = build_random_ltx2(configs, torch.device("cpu"), torch.bfloat16)

    assert isinstance(pipeline, LTX2Pipeline)
    assert isinstance(upsampler, LTX2LatentUpsamplerModel)
    assert set(facts) == FACT_KEYS
    assert facts["text_encoder"] == "real"
    assert facts["dtype"] == "bfloat16"
    assert set(facts["parameters"]) == set(MODEL_NAMES)
    assert set(facts["build_seconds"]) == {*MODEL_NAMES, "total"}
    dtypes = {p.dtype for name in MODEL_NAMES[:-1] for p in getattr(pipeline, name).parameters()}
    assert dtypes == {torch.bfloat16}
    assert pipeline.vae.latents_std.dtype == torch.bfloat16  # diffusers' buffers follow the dtype


def _shrunken_configs(tmp_path: Path) -> Path:
    """The real configs with every width and depth cut down, couplings kept."""
    configs = {
        name: json.loads((CONFIGS_DIR / f"{name}.json").read_text()) for name in CONFIG_NAMES
    }
    hidden = 32
    configs["text_encoder"]["text_config"].update(
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=16,
    )
    configs["text_encoder"]["vision_config"].update(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=8,
        patch_size=2,
    )
    configs["text_encoder"]["mm_tokens_per_image"] = 4
    configs["connectors"].update(
        caption_channels=hidden,
        text_proj_in_factor=3,
        video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=hidden // 4,
        audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=hidden // 4,
    )
    configs["transformer"].update(
        num_layers=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        caption_channels=hidden,
    )
    configs["vae"].update(
        block_out_channels=[8, 8, 8, 8],
        decoder_block_out_channels=[8, 8, 8],
        layers_per_block=[1, 1, 1, 1, 1],
        decoder_layers_per_block=[1, 1, 1, 1],
    )
    configs["audio_vae"].update(base_channels=8)
    configs["vocoder"].update(hidden_channels=32)
    configs["latent_upsampler"].update(mid_channels=32, num_blocks_per_stage=1)
    directory = tmp_path / "shrunken"
    directory.mkdir()
    for name, config in configs.items():
        (directory / f"{name}.json").write_text(json.dumps(config))
    return directory


def test_the_ltx_2_3_configs_are_the_published_22b() -> None:
    """LTX-2.3's "22B": the transformer and its connectors (the text encoder is Gemma 3 12B);
    built on the meta device from the converter's configs, with its vocoder with bandwidth
    extension."""
    models = empty_ltx2(CONFIGS_DIR.parent / "ltx-2.3")
    counts = {name: count_parameters(model) for name, model in models.items()}
    assert (counts["transformer"], counts["connectors"]) == (18_988_838_144, 3_172_227_584)
    assert abs(counts["transformer"] + counts["connectors"] - 22e9) / 22e9 < 0.01
    assert type(models["vocoder"]).__name__ == "LTX2VocoderWithBWE"
    assert models["vae"].spatial_compression_ratio == 32


def test_the_ltx_2_5_configs_are_the_published_sizes() -> None:
    """LTX-2.5: LTX-2.3's transformer without its video FFN biases (48 x 20,480) and with one
    keyframe position embedding (4,096), the same connectors, and a Gemma 4 text encoder; the
    published bf16 files hold 18.99B, 3.17B and 11.96B parameters."""
    models = empty_ltx2(CONFIGS_DIR.parent / "ltx-2.5")
    counts = {name: count_parameters(model) for name, model in models.items()}
    assert counts["transformer"] == 18_988_838_144 - 48 * 20_480 + 4_096
    assert counts["connectors"] == 3_172_227_584
    assert counts["text_encoder"] == 11_959_730_176
    assert type(models["text_encoder"]).__name__ == "Gemma4UnifiedForConditionalGeneration"
    assert models["transformer"].config.use_keyframes_abs_pos_embedding is True


def test_a_gemma_4_text_encoder_gets_neutral_norms_and_encodes() -> None:
    """Gemma 4's RMSNorm scales by its weight (Gemma 3's by 1 + weight): random weights must give
    it ones, or every hidden state is zero."""
    config = json.loads((CONFIGS_DIR.parent / "ltx-2.5" / "text_encoder.json").read_text())
    config["text_config"].update(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        global_head_dim=16,
    )
    config["vision_config"].update(mm_embed_dim=16, mm_posemb_size=16, output_proj_dims=32)
    config["audio_config"] = None
    encoder = materialize(
        empty_model("text_encoder", config),
        torch.device("cpu"),
        torch.float32,
        torch.Generator().manual_seed(0),
        cast_buffers=False,
    )
    scales = [
        m.weight for m in encoder.modules() if type(m).__name__.endswith("RMSNorm") and m.with_scale
    ]
    assert scales and all(torch.equal(scale, torch.ones_like(scale)) for scale in scales)
    ids = torch.tensor([[2, 100, 200, 300]])
    hidden = encoder(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    assert torch.isfinite(hidden).all() and hidden.abs().sum() > 0


def test_random_weights_keep_in_fp32_what_from_pretrained_keeps_there() -> None:
    """Wan's transformer keeps its norms and time embedding in fp32 under bf16: the random
    build does as loading its real weights would, and the rest is bf16."""
    from diffusers.models.transformers.transformer_wan import WanTransformer3DModel

    with init_empty_weights():
        model = WanTransformer3DModel(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=4,
            out_channels=4,
            text_dim=8,
            freq_dim=16,
            ffn_dim=16,
            num_layers=1,
        )
    built = materialize(model, torch.device("cpu"), torch.bfloat16, torch.Generator())
    dtypes = {name: param.dtype for name, param in built.named_parameters()}
    assert dtypes["scale_shift_table"] == torch.float32
    assert dtypes["condition_embedder.time_embedder.linear_1.weight"] == torch.float32
    assert dtypes["blocks.0.attn1.to_q.weight"] == torch.bfloat16
    assert dtypes["proj_out.weight"] == torch.bfloat16
