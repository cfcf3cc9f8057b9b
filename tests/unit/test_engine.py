"""The engine on a CPU: the tiny model (built offline) runs every preset's two-stage code path."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from diffusers import LTX2Pipeline, LTX2VideoTransformer3DModel
from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

from kinema.catalog.plan import PLAIN_DENOISER, GenerationPlan, plan_generation
from kinema.catalog.registry import (
    DISTILLED_SIGMAS,
    LTX_2,
    LTX_2_QUALITY,
    MODELS,
    REFINE_SIGMAS,
    TINY_LTX2,
    TINY_LTX2_QUALITY,
    ModelSpec,
    StageSpec,
)
from kinema.config import Settings
from kinema.domain import Clip, GenerationRequest
from kinema.engine import components, speed, tiny
from kinema.engine.components import Source
from kinema.engine.pipelines import ModelRunner, engine_from_components, load_engine
from kinema.engine.speed import Hardware
from kinema.engine.stages import encode_prompt, stage_args
from kinema.engine.tiny import (
    LORA_FILE,
    TINY_DIR_NAME,
    UPSAMPLER_DIR,
    build_tiny_ltx2,
    ensure_tiny_ltx2,
)
from kinema.errors import GenerationCanceled, ModelUnavailable

PRESETS = {"fast": TINY_LTX2, "quality": TINY_LTX2_QUALITY}
SIZES = {"16:9": (128, 64), "9:16": (64, 128), "1:1": (64, 64)}  # generation sizes (64-multiples)
H100 = Hardware("cuda", memory_gb=85.0, capability=(9, 0), flash_3=True)


def tiny_plan(spec: ModelSpec = TINY_LTX2, seed: int = 7, **request: object) -> GenerationPlan:
    fields = {"prompt": "a red fox jumps over a fence", "duration": 5, **request}
    return plan_generation(GenerationRequest(model=spec.id, **fields), spec, seed=seed)


def never() -> bool:
    return False


def ignore_steps(done: int, total: int) -> None:
    pass


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("data"), tiny_weights=str(tiny_weights))


@pytest.fixture(scope="module")
def engines(settings: Settings) -> dict[str, ModelRunner]:
    return {name: load_engine(spec, settings) for name, spec in PRESETS.items()}


@pytest.fixture(scope="module")
def fast(engines: dict[str, ModelRunner]) -> ModelRunner:
    return engines["fast"]


@pytest.fixture(scope="module")
def quality(engines: dict[str, ModelRunner]) -> ModelRunner:
    return engines["quality"]


def fresh_engine(
    tiny_weights: Path, spec: ModelSpec = TINY_LTX2, lora: bool = True, **settings: object
) -> ModelRunner:
    """An engine of its own (speed-feature tests change it), over freshly loaded components."""
    pipeline = LTX2Pipeline.from_pretrained(tiny_weights, dtype=torch.float32)
    upsampler = LTX2LatentUpsamplerModel.from_pretrained(tiny_weights / UPSAMPLER_DIR)
    config = Settings(data_dir=tiny_weights.parent / "fresh", **settings)  # type: ignore[arg-type]
    source = Source(str(tiny_weights / LORA_FILE), "KINEMA_TINY_WEIGHTS") if lora else None
    return engine_from_components(spec, pipeline, upsampler, config, torch.device("cpu"), source)


def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub reads HF_HUB_OFFLINE once, at import; patch its constant as well."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def assert_clip(clip: Clip, plan: GenerationPlan) -> None:
    assert clip.frames.shape == (plan.num_frames, plan.height, plan.width, 3)
    assert clip.frames.dtype == np.uint8
    assert clip.fps == plan.fps
    assert clip.audio is not None
    assert clip.audio.dtype == np.float32
    assert clip.audio.shape[0] in (1, 2)
    assert np.abs(clip.audio).max() <= 1.0
    assert clip.audio.shape[1] / clip.sample_rate == pytest.approx(plan.num_frames / 24, abs=0.05)


# -- the tiny model ------------------------------------------------------------------------------


def test_tiny_model_has_an_upsampler_and_a_lora_and_reloads(tiny_weights: Path) -> None:
    pipeline = LTX2Pipeline.from_pretrained(tiny_weights, dtype=torch.float32)
    upsampler = LTX2LatentUpsamplerModel.from_pretrained(tiny_weights / UPSAMPLER_DIR)

    assert pipeline.vae.spatial_compression_ratio == 32
    assert pipeline.vae.temporal_compression_ratio == 8
    assert upsampler.config.in_channels == pipeline.vae.config.latent_channels
    latents = torch.zeros(1, upsampler.config.in_channels, 2, 1, 2)
    assert upsampler(latents).shape == (1, upsampler.config.in_channels, 2, 2, 4)
    from safetensors.torch import load_file

    keys = list(load_file(tiny_weights / LORA_FILE))
    assert keys and all(k.startswith("diffusion_model.transformer_blocks.") for k in keys)
    assert ensure_tiny_ltx2(tiny_weights.parent) == tiny_weights


def test_tiny_build_is_deterministic_and_atomic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two builds, byte for byte; with a short VAE fit (the fit is the build's only slow part,
    and its steps run the same code however many there are)."""
    monkeypatch.setattr(tiny, "VAE_FIT_STEPS", 3)
    build_tiny_ltx2(tmp_path / "one")
    build_tiny_ltx2(tmp_path / "two")

    one, two = tmp_path / "one", tmp_path / "two"
    weights = sorted(path.relative_to(one) for path in one.rglob("*.safetensors"))
    assert len(weights) == 8  # 6 pipeline components, the upsampler, the LoRA
    for relative in weights:
        assert (one / relative).read_bytes() == (two / relative).read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["one", "two"]


def test_concurrent_ensure_builds_one_whole_model(
    tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tiny, "VAE_FIT_STEPS", 2)  # the build's locking is tested, not its VAE
    with ThreadPoolExecutor(max_workers=2) as pool:
        built = list(pool.map(ensure_tiny_ltx2, [tmp_path, tmp_path]))

    assert built == [tmp_path / TINY_DIR_NAME] * 2
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        f".{TINY_DIR_NAME}.lock",
        TINY_DIR_NAME,
    ]
    index = "model_index.json"
    assert (built[0] / index).read_bytes() == (tiny_weights / index).read_bytes()


def test_tiny_without_setting_is_built_and_holds_every_component(
    tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Path] = []

    def ensure(models_dir: Path) -> Path:
        built.append(models_dir)
        return tiny_weights

    monkeypatch.setattr("kinema.engine.tiny.ensure_tiny_ltx2", ensure)
    settings = Settings(data_dir=tmp_path)
    sources = components.resolve_sources(TINY_LTX2_QUALITY, settings)

    assert built == [settings.models_dir]
    assert sources.pipeline.location == str(tiny_weights)
    assert (sources.upsampler.location, sources.upsampler.subfolder) == (
        str(tiny_weights),
        UPSAMPLER_DIR,
    )
    assert (sources.lora.location, sources.lora.file) == (str(tiny_weights), LORA_FILE)


@pytest.mark.parametrize("model_id", ["ltx-2.3", "ltx-2.3:quality", "ltx-2.5", "ltx-2.5:quality"])
def test_a_local_copy_named_in_kinema_weights_serves_every_part_it_holds(
    model_id: str, tmp_path: Path
) -> None:
    """The upsampler (and LTX-2.5's distilled LoRA) live in the model's own repository: a copy
    of it named by KINEMA_WEIGHTS serves them too, nothing from the Hub."""
    spec = MODELS[model_id]
    settings = Settings(data_dir=tmp_path, weights={model_id: "/models/copy"})
    sources = components.resolve_sources(spec, settings)
    assert sources.pipeline.location == "/models/copy"
    assert sources.upsampler is not None
    assert (sources.upsampler.location, sources.upsampler.subfolder) == (
        "/models/copy",
        "latent_upsampler",
    )
    if model_id == "ltx-2.5:quality":
        assert sources.lora is not None
        assert (sources.lora.location, sources.lora.file) == ("/models/copy", spec.lora_file)
    if model_id == "ltx-2.3:quality":  # Lightricks publishes it in another repository
        assert sources.lora is not None and sources.lora.location == "Lightricks/LTX-2.3"


def test_tiny_weights_setting_overrides_the_build(settings: Settings) -> None:
    assert load_engine(TINY_LTX2, settings).spec is TINY_LTX2
    assert not settings.models_dir.exists()


# -- generation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("aspect_ratio", SIZES)
def test_five_seconds_at_every_size(
    engines: dict[str, ModelRunner], preset: str, aspect_ratio: str
) -> None:
    plan = tiny_plan(PRESETS[preset], aspect_ratio=aspect_ratio)
    clip = engines[preset].generate(plan, ignore_steps, never)

    assert (plan.width, plan.height) == SIZES[aspect_ratio]
    assert plan.num_frames == 121
    assert_clip(clip, plan)


def test_ten_seconds_keeps_audio_in_step(fast: ModelRunner) -> None:
    plan = tiny_plan(duration=10)
    clip = fast.generate(plan, ignore_steps, never)

    assert plan.num_frames == 241
    assert_clip(clip, plan)


def test_timings_name_every_stage(fast: ModelRunner) -> None:
    fast.generate(tiny_plan(), ignore_steps, never)

    expected = {"text_encode", "stage1", "upsample", "refine", "video_decode", "audio_decode"}
    assert set(fast.last_timings) == expected | {"stage1_per_step"}
    assert fast.last_timings["stage1_per_step"] == pytest.approx(
        fast.last_timings["stage1"] / len(DISTILLED_SIGMAS), abs=1e-3
    )


def test_same_seed_same_clip_other_seed_other_frames(fast: ModelRunner) -> None:
    first = fast.generate(tiny_plan(seed=7), ignore_steps, never)
    again = fast.generate(tiny_plan(seed=7), ignore_steps, never)
    other = fast.generate(tiny_plan(seed=8), ignore_steps, never)

    assert np.array_equal(first.frames, again.frames)
    assert first.audio is not None and again.audio is not None
    assert np.array_equal(first.audio, again.audio)
    assert not np.array_equal(first.frames, other.frames)


@pytest.mark.parametrize("preset", PRESETS)
def test_progress_counts_both_stages(engines: dict[str, ModelRunner], preset: str) -> None:
    calls: list[tuple[int, int]] = []
    plan = tiny_plan(PRESETS[preset])
    engines[preset].generate(plan, lambda done, total: calls.append((done, total)), never)

    total = plan.total_steps
    assert total == sum(stage.num_inference_steps for stage in plan.stages) > 0
    assert calls == [(step, total) for step in range(1, total + 1)]


@pytest.mark.parametrize(("stop_after", "reached"), [(3, "stage1"), (9, "refine")])
def test_cancel_in_either_stage_discards(fast: ModelRunner, stop_after: int, reached: str) -> None:
    calls: list[int] = []

    def canceled() -> bool:
        return len(calls) >= stop_after

    with pytest.raises(GenerationCanceled):
        fast.generate(tiny_plan(), lambda done, total: calls.append(done), canceled)
    assert calls == list(range(1, stop_after + 1))  # stopped at the next step
    assert reached in fast.last_timings
    assert "video_decode" not in fast.last_timings
    assert ("refine" in fast.last_timings) == (reached == "refine")
    assert fast.generate(tiny_plan(), ignore_steps, never).frames.shape[0] == 121


def test_cancel_before_start(fast: ModelRunner) -> None:
    with pytest.raises(GenerationCanceled):
        fast.generate(tiny_plan(), ignore_steps, lambda: True)


def test_stage_one_runs_at_half_size_and_is_upsampled(
    fast: ModelRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    forward = fast.upsampler.forward

    def spy(latents: torch.Tensor) -> torch.Tensor:
        out = forward(latents)
        seen.append((tuple(latents.shape), tuple(out.shape)))
        return out

    monkeypatch.setattr(fast.upsampler, "forward", spy)
    plan = tiny_plan(aspect_ratio="16:9")
    fast.generate(plan, ignore_steps, never)

    stage1 = plan.stages[0]
    assert (stage1.width, stage1.height) == (plan.width // 2, plan.height // 2)
    ((inp, out),) = seen
    assert inp[-2:] == (stage1.height // 32, stage1.width // 32)
    assert out[-2:] == (plan.height // 32, plan.width // 32)
    assert inp[:3] == out[:3]  # same batch, channels, frames


def scheduler_sigmas(engine: ModelRunner, plan: GenerationPlan) -> list[list[float]]:
    """The schedule in use at the first step of stage 1 and at the last step of the last stage."""
    sigmas: list[list[float]] = []

    def record(done: int, total: int) -> None:
        if done in (1, total):
            sigmas.append(engine.pipeline.scheduler.sigmas[:-1].tolist())

    engine.generate(plan, record, never)
    return sigmas


def test_schedules_fixed_as_given_spaced_shifted(quality: ModelRunner, fast: ModelRunner) -> None:
    assert scheduler_sigmas(fast, tiny_plan()) == [
        pytest.approx(DISTILLED_SIGMAS),
        pytest.approx(REFINE_SIGMAS),
    ]
    spaced, refine = scheduler_sigmas(quality, tiny_plan(TINY_LTX2_QUALITY))
    assert len(spaced) == 4
    assert spaced != pytest.approx(np.linspace(1.0, 1 / 4, 4).tolist())  # shifted for the size
    assert refine == pytest.approx(REFINE_SIGMAS)


def test_lora_is_active_on_distilled_stages_only(quality: ModelRunner, fast: ModelRunner) -> None:
    active: list[bool] = []
    plan = tiny_plan(TINY_LTX2_QUALITY)
    quality.generate(plan, lambda done, total: active.append(quality.lora_active()), never)

    assert quality.lora == "adapter"
    first, refine = plan.stages[0].num_inference_steps, plan.stages[1].num_inference_steps
    assert active == [False] * first + [True] * refine
    assert fast.lora == "fused"  # every fast stage runs with it: merged into the weights
    assert fast.lora_active()


def test_stg_changes_nothing_on_the_ltx2_0_transformer_so_the_guided_preset_skips_it(
    quality: ModelRunner,
) -> None:
    """diffusers converts LTX-2.0 with perturbed_attn=False (the tiny twin too): its STG pass is
    the conditional pass again (unbatched, so equal up to float rounding), so `ltx-2:quality`
    leaves it out and loses nothing."""
    assert quality.pipeline.transformer.config.perturbed_attn is False
    plan = tiny_plan(TINY_LTX2_QUALITY, duration=1)
    with_stg = replace(
        plan, stages=(replace(plan.stages[0], stg_scale=1.0, audio_stg_scale=1.0), plan.stages[1])
    )
    without = quality.generate(plan, ignore_steps, never)
    with_it = quality.generate(with_stg, ignore_steps, never)
    difference = np.abs(without.frames.astype(int) - with_it.frames.astype(int))
    assert difference.max() <= 1 and difference.mean() < 0.01
    assert without.audio == pytest.approx(with_it.audio, abs=1e-5)
    assert (LTX_2_QUALITY.stg_scale, LTX_2_QUALITY.audio_stg_scale) == (0.0, 0.0)


def test_fused_lora_equals_the_active_adapter(fast: ModelRunner, tiny_weights: Path) -> None:
    adapter = fresh_engine(tiny_weights, lora=False)
    components.load_lora(
        adapter.pipeline,
        TINY_LTX2,
        Source(str(tiny_weights), "KINEMA_TINY_WEIGHTS", file=LORA_FILE),
    )
    adapter.lora = "adapter"
    without = fresh_engine(tiny_weights, lora=False)
    plan = tiny_plan()

    fused = fast.generate(plan, ignore_steps, never).frames.astype(int)
    toggled = adapter.generate(plan, ignore_steps, never).frames.astype(int)
    plain = without.generate(plan, ignore_steps, never).frames.astype(int)

    assert np.abs(fused - toggled).max() <= 1
    assert np.abs(fused - plain).max() > 1


def test_single_stage_decodes_as_the_pipeline_does(tiny_weights: Path) -> None:
    """Stopping at latents and decoding them ourselves gives what the pipeline's own call gives."""
    spec = replace(TINY_LTX2, stages=(StageSpec(steps=3, uses_cfg=False),))
    engine = fresh_engine(tiny_weights, spec, lora=False)
    plan = tiny_plan(spec, aspect_ratio="1:1")
    stage = plan.stages[0]

    clip = engine.generate(plan, ignore_steps, never)
    video, audio = engine.pipeline(
        prompt=plan.prompt,
        width=stage.width,
        height=stage.height,
        num_frames=plan.num_frames,
        frame_rate=plan.fps,
        num_inference_steps=stage.num_inference_steps,
        guidance_scale=1.0,
        audio_guidance_scale=1.0,
        max_sequence_length=plan.max_sequence_length,
        generator=torch.Generator().manual_seed(plan.seed),
        output_type="np",
        return_dict=False,
        **{**spec.extra_call_args, **PLAIN_DENOISER},
    )

    assert "upsample" not in engine.last_timings and "refine" not in engine.last_timings
    assert np.abs(clip.frames.astype(int) - np.round(video[0] * 255).astype(int)).max() <= 1
    assert clip.audio == pytest.approx(np.clip(audio[0].numpy(), -1, 1), abs=1e-5)


def test_distilled_stages_run_the_plain_denoiser(fast: ModelRunner, quality: ModelRunner) -> None:
    plan = tiny_plan(TINY_LTX2_QUALITY, negative_prompt="blurry", cfg_scale=0.8)
    cfg_stage, refine = plan.stages
    embeds = encode_prompt(quality.pipeline, plan)

    guided = stage_args(plan, cfg_stage, embeds, {})
    plain = stage_args(plan, refine, embeds, {"stg_scale": 1.0})
    assert guided["guidance_scale"] == cfg_stage.guidance_scale > 1
    assert guided["negative_prompt_embeds"] is not None
    assert guided["stg_scale"] == TINY_LTX2_QUALITY.stg_scale and "modality_scale" not in guided
    assert plain.items() >= PLAIN_DENOISER.items()
    assert "negative_prompt_embeds" not in plain
    assert plain["noise_scale"] == REFINE_SIGMAS[0]
    assert plain["sigmas"] == list(REFINE_SIGMAS)


def test_without_audio_the_clip_has_none(fast: ModelRunner) -> None:
    clip = fast.generate(tiny_plan(generate_audio=False), ignore_steps, never)

    assert clip.audio is None
    assert clip.frames.shape[0] == 121
    assert "audio_decode" not in fast.last_timings


def test_warm_up_runs_a_short_clip(fast: ModelRunner) -> None:
    fast.warm_up()

    assert {"stage1", "refine", "video_decode"} <= set(fast.last_timings)


# -- speed features ------------------------------------------------------------------------------


def test_cpu_defaults_leave_everything_native(fast: ModelRunner) -> None:
    assert fast.features == {
        "lora": "fused",
        "offload": "none",
        "release_text_encoder": "off",
        "fp8": "off",
        "attention": "native",
        "step_cache": "none",
        "compile": "off",
        "vae_tiling": "auto",
    }


@pytest.mark.parametrize(
    ("setting", "memory_gb", "expected"),
    [
        ("auto", 85, "none"),
        ("auto", 48, "model"),
        ("auto", 24, "model"),
        ("auto", 16, "group"),
        ("model", 85, "model"),
        ("group", 85, "group"),
        ("none", 16, "none"),
    ],
)
def test_offload_decision(setting: str, memory_gb: float, expected: str) -> None:
    assert speed.decide_offload(setting, Hardware("cuda", memory_gb=memory_gb)) == expected
    assert speed.decide_offload(setting, Hardware("cpu")) == "none"


def test_release_text_encoder_decision() -> None:
    small = Hardware("cuda", memory_gb=48)
    assert speed.decide_release_text_encoder("auto", "none", small)
    assert not speed.decide_release_text_encoder("auto", "none", H100)
    assert speed.decide_release_text_encoder("on", "none", H100)
    assert not speed.decide_release_text_encoder("on", "model", small)  # offload moves it already
    assert not speed.decide_release_text_encoder("off", "none", small)
    assert not speed.decide_release_text_encoder("on", "none", Hardware("cpu"))


def test_compile_attention_and_tiling_decisions() -> None:
    assert speed.decide_compile("auto", H100)
    assert not speed.decide_compile("auto", Hardware("cpu"))
    assert speed.decide_compile("on", Hardware("cpu"))
    assert not speed.decide_compile("off", H100)

    assert speed.decide_attention_backend("auto", H100) == "_flash_3"
    assert speed.decide_attention_backend("auto", replace(H100, flash_3=False)) is None
    assert speed.decide_attention_backend("auto", replace(H100, capability=(8, 0))) is None
    assert speed.decide_attention_backend("auto", Hardware("cpu")) is None
    assert speed.decide_attention_backend("flash_hub", H100) == "flash_hub"

    assert speed.decide_vae_tiling("auto", 1920, 1088, 121)
    assert speed.decide_vae_tiling("auto", 1280, 720, 121)
    assert not speed.decide_vae_tiling("auto", 768, 512, 121)
    assert speed.decide_vae_tiling("on", 64, 64, 9)
    assert not speed.decide_vae_tiling("off", 1920, 1088, 241)


def test_fp8_skips_on_cpu_and_needs_torchao(
    fast: ModelRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    transformer = fast.pipeline.transformer
    assert speed.apply_fp8(transformer, True, Hardware("cpu")) == "skipped"
    assert speed.apply_fp8(transformer, False, H100) == "off"

    monkeypatch.setitem(sys.modules, "torchao", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    with pytest.raises(ModelUnavailable, match="pip install torchao"):
        speed.apply_fp8(transformer, True, H100)


def test_named_attention_backend_is_set(tiny_weights: Path) -> None:
    engine = fresh_engine(tiny_weights, attention_backend="native")

    backends = {
        module.processor._attention_backend
        for module in engine.pipeline.transformer.modules()
        if hasattr(getattr(module, "processor", None), "_attention_backend")
    }
    assert engine.features["attention"] == "native"
    assert {str(getattr(b, "value", b)) for b in backends} == {"native"}
    assert_clip(engine.generate(tiny_plan(), ignore_steps, never), tiny_plan())


def test_unknown_attention_backend_is_unavailable(tiny_weights: Path) -> None:
    with pytest.raises(ModelUnavailable, match="KINEMA_ATTENTION_BACKEND"):
        fresh_engine(tiny_weights, attention_backend="no-such-backend")


def test_taylorseer_step_cache_runs(tiny_weights: Path) -> None:
    engine = fresh_engine(tiny_weights, step_cache="taylorseer")
    plan = tiny_plan()

    first = engine.generate(plan, ignore_steps, never)
    again = engine.generate(plan, ignore_steps, never)

    assert engine.features["step_cache"] == "taylorseer"
    assert engine.pipeline.transformer.is_cache_enabled
    assert_clip(first, plan)
    assert np.array_equal(first.frames, again.frames)  # the cache is reset between stages/clips


@pytest.mark.parametrize("cache", ["first_block", "mag"])
def test_step_caches_ltx2_cannot_use_are_unavailable(tiny_weights: Path, cache: str) -> None:
    with pytest.raises(ModelUnavailable, match=f"KINEMA_STEP_CACHE={cache}"):
        fresh_engine(tiny_weights, step_cache=cache)


def test_first_block_cache_config_takes_the_threshold() -> None:
    config = speed.step_cache_config("first_block", 0.12)
    assert type(config).__name__ == "FirstBlockCacheConfig"
    assert config.threshold == 0.12
    assert speed.step_cache_config("none", 0.12) is None


def test_vae_tiling_decodes_in_tiles(tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = fresh_engine(tiny_weights, vae_tiling="on")
    vae = engine.pipeline.vae
    vae.tile_sample_min_width = vae.tile_sample_min_height = 64  # force tiles on 128x64 frames
    vae.tile_sample_stride_width = vae.tile_sample_stride_height = 64
    tiles: list[tuple[int, ...]] = []
    tiled_decode = vae.tiled_decode

    def spy(z: torch.Tensor, *args: object, **kwargs: object) -> object:
        tiles.append(tuple(z.shape))
        return tiled_decode(z, *args, **kwargs)

    monkeypatch.setattr(vae, "tiled_decode", spy)
    plan = tiny_plan(aspect_ratio="16:9")
    clip = engine.generate(plan, ignore_steps, never)

    assert vae.use_tiling
    assert tiles  # the decode went through the tiled path
    assert_clip(clip, plan)


def test_regional_compile_traces_whole_blocks(
    tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fullgraph=True: a graph break in a transformer block fails here, not on the GPU."""
    monkeypatch.setattr(speed, "COMPILE_BACKEND", "eager")  # trace with dynamo, no inductor
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    engine = fresh_engine(tiny_weights, compile="on")

    for aspect_ratio in ("16:9", "9:16"):  # stage sizes differ: dynamic shapes after the first
        plan = tiny_plan(aspect_ratio=aspect_ratio)
        assert_clip(engine.generate(plan, ignore_steps, never), plan)
    assert engine.features["compile"] == "eager"
    cache = engine.settings.compile_cache_dir / "inductor"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(cache)


def test_compile_with_a_step_cache_compiles_graph_pieces(
    tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step cache's hooks break the block graph: fullgraph would fail, so it is off."""
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(
        LTX2VideoTransformer3DModel,
        "compile_repeated_blocks",
        lambda self, **kwargs: calls.append(kwargs),
    )
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    fresh_engine(tiny_weights, compile="on", step_cache="taylorseer")
    fresh_engine(tiny_weights, compile="on")

    assert calls == [
        {"fullgraph": False, "backend": "inductor"},
        {"fullgraph": True, "backend": "inductor"},
    ]


# -- weights: the real presets, and what fails --------------------------------------------------


def test_ltx2_presets_load_from_local_paths(tiny_weights: Path, tmp_path: Path) -> None:
    """KINEMA_LTX2_* overrides as local paths (the tiny weights stand in for the real ones)."""
    settings = Settings(
        data_dir=tmp_path,
        ltx2_weights=str(tiny_weights),
        ltx2_upsampler=str(tiny_weights / UPSAMPLER_DIR),
        ltx2_distilled_lora=str(tiny_weights / LORA_FILE),
    )
    assert load_engine(LTX_2, settings).lora == "fused"

    settings = replace_settings(settings, ltx2_upsampler=str(tiny_weights))  # a repo-like dir
    assert load_engine(LTX_2_QUALITY, settings).lora == "adapter"


def replace_settings(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update=changes)


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"ltx2_weights": "nowhere"}, "KINEMA_LTX2_WEIGHTS"),
        ({"ltx2_upsampler": "nowhere"}, "KINEMA_LTX2_UPSAMPLER"),
        ({"ltx2_distilled_lora": "nowhere"}, "KINEMA_LTX2_DISTILLED_LORA"),
    ],
)
def test_missing_local_weights_name_the_setting(
    tiny_weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    override: dict[str, str],
    setting: str,
) -> None:
    offline(monkeypatch)
    missing = str(tmp_path / "nowhere")
    settings = Settings(
        data_dir=tmp_path,
        ltx2_weights=str(tiny_weights),
        ltx2_upsampler=str(tiny_weights / UPSAMPLER_DIR),
        ltx2_distilled_lora=str(tiny_weights / LORA_FILE),
    )
    settings = replace_settings(settings, **{name: missing for name in override})

    with pytest.raises(ModelUnavailable, match=setting) as caught:
        load_engine(LTX_2, settings)
    assert missing in str(caught.value)


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated")
@pytest.mark.parametrize(
    ("unset", "setting"),
    [
        ("ltx2_weights", "KINEMA_LTX2_WEIGHTS"),
        ("ltx2_upsampler", "KINEMA_LTX2_UPSAMPLER"),
        ("ltx2_distilled_lora", "KINEMA_LTX2_DISTILLED_LORA"),
    ],
)
def test_unreachable_hub_ids_name_the_setting(
    tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unset: str, setting: str
) -> None:
    """Each component falls back to its Hub id; offline and uncached, each names its setting."""
    offline(monkeypatch)
    spec = replace(
        LTX_2,
        weights="kinema-tests/no-such-model",
        upsampler_weights="kinema-tests/no-such-model",
        lora_weights="kinema-tests/no-such-model",
    )
    local = {
        "ltx2_weights": str(tiny_weights),
        "ltx2_upsampler": str(tiny_weights / UPSAMPLER_DIR),
        "ltx2_distilled_lora": str(tiny_weights / LORA_FILE),
    }
    local[unset] = "kinema-tests/no-such-model" if unset == "ltx2_weights" else None
    settings = Settings(data_dir=tmp_path, **local)  # type: ignore[arg-type]

    with pytest.raises(ModelUnavailable, match=setting) as caught:
        load_engine(spec, settings)
    assert "kinema-tests/no-such-model" in str(caught.value)
