"""LTX-2.5 on a CPU: its tiny twin, in the layout of the real repository, runs both presets
through the LTX-2 engine: the distilled transformer for the fast preset, `transformer_full/` on
the shifted schedule then the distilled LoRA for quality, Gemma 4 encoding the prompt, 48 kHz
sound from the bandwidth-extension vocoder, a first frame through the condition pipeline."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.pipelines.ltx2.utils import resolve_default_image_crf
from safetensors.torch import load_file

from kinema.catalog.families.ltx2 import TINY_LTX25, TINY_LTX25_QUALITY
from kinema.catalog.plan import GenerationPlan, plan_generation
from kinema.catalog.spec import ModelSpec
from kinema.config import Settings
from kinema.domain import Condition, GenerationRequest
from kinema.engine.components import needs_tiny_build
from kinema.engine.families import load_model
from kinema.engine.pipelines import ModelRunner
from kinema.engine.tiny_ltx25 import FULL_TRANSFORMER_DIR, TINY_DIR_NAME
from kinema.media import fit_to_canvas
from tests.pictures import half_white


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("ltx25"))


@pytest.fixture(scope="module")
def fast(settings: Settings) -> ModelRunner:
    runner = load_model(TINY_LTX25, settings)
    assert isinstance(runner, ModelRunner)
    return runner


@pytest.fixture(scope="module")
def quality(settings: Settings, fast: ModelRunner) -> ModelRunner:
    runner = load_model(TINY_LTX25_QUALITY, settings)
    assert isinstance(runner, ModelRunner)
    return runner


def plan_for(spec: ModelSpec, seed: int = 3, **fields: object) -> GenerationPlan:
    request = GenerationRequest(model=spec.id, prompt="a fox", duration=2, **fields)
    return plan_generation(request, spec, seed)


def run(engine: ModelRunner, plan: GenerationPlan) -> np.ndarray:
    clip = engine.generate(plan, lambda done, total: None, lambda: False)
    assert clip.audio is not None and clip.sample_rate == 48_000
    assert clip.audio.shape[0] == 2  # stereo
    assert clip.audio.shape[1] == pytest.approx(plan.num_frames / plan.fps * 48_000, rel=0.05)
    assert np.isfinite(clip.audio).all() and clip.audio.std() > 0
    return clip.frames


def test_the_fast_preset_makes_a_clip_with_48_khz_sound(fast: ModelRunner) -> None:
    plan = plan_for(TINY_LTX25)
    frames = run(fast, plan)
    assert frames.shape == (plan.num_frames, plan.height, plan.width, 3)
    assert fast.last_timings.keys() >= {"stage1", "upsample", "refine", "video_decode"}
    assert fast.features["lora"] == "none"  # the distilled checkpoint needs no LoRA


def test_the_twin_loads_what_ltx_2_5_runs_and_leaves_what_it_never_runs(
    fast: ModelRunner, settings: Settings
) -> None:
    pipeline = fast.pipeline
    assert type(pipeline.text_encoder).__name__ == "Gemma4UnifiedForConditionalGeneration"
    assert type(pipeline.vocoder).__name__ == "LTX2VocoderWithBWE"
    assert pipeline.duration_head is None and pipeline.prompt_enhancer is None
    assert pipeline.transformer.config.perturbed_attn is True
    built = settings.models_dir / TINY_DIR_NAME
    assert (built / "duration_head").is_dir() and (built / "prompt_enhancer").is_dir()
    assert resolve_default_image_crf(pipeline.text_encoder) == 18
    assert not needs_tiny_build(TINY_LTX25, settings)


def test_quality_runs_the_full_transformer_on_the_shifted_schedule(
    quality: ModelRunner, fast: ModelRunner, settings: Settings
) -> None:
    full = load_file(
        str(
            settings.models_dir
            / TINY_DIR_NAME
            / FULL_TRANSFORMER_DIR
            / "diffusion_pytorch_model.safetensors"
        )
    )
    name = "proj_out.weight"
    loaded = dict(quality.pipeline.transformer.named_parameters())[name]
    assert torch.equal(loaded, full[name].to(loaded.dtype))
    assert not torch.equal(loaded, dict(fast.pipeline.transformer.named_parameters())[name])
    assert fast.pipeline.scheduler.config.use_dynamic_shifting is False  # the repository's
    assert quality._schedulers["spaced"].config.use_dynamic_shifting is True
    assert quality._schedulers["spaced"].config.shift_terminal == 0.1
    assert quality.features["lora"] == "adapter"  # the distilled LoRA refines
    plan = plan_for(TINY_LTX25_QUALITY)
    assert plan.stages[0].uses_cfg and plan.stages[0].guidance_scale == 3.0
    frames = run(quality, plan)
    assert frames.shape == (plan.num_frames, plan.height, plan.width, 3)


def image_plan(mirrored: bool) -> GenerationPlan:
    plan = plan_for(TINY_LTX25, conditions=(Condition("j/input-0.png", 0),))
    picture = np.asarray(half_white(96, 54, mirrored=mirrored))[np.newaxis]
    canvas = fit_to_canvas(
        picture, (plan.output_width, plan.output_height), (plan.width, plan.height)
    )
    return replace(plan, conditions=(replace(plan.conditions[0], pixels=canvas),))


def test_a_first_frame_acts_on_the_clip_from_its_start(fast: ModelRunner) -> None:
    """Random weights do not give the picture back: this shows that the image reaches the
    condition pipeline (re-encoded at LTX-2.5's CRF) and moves the first frames."""
    left, right = run(fast, image_plan(False)), run(fast, image_plan(True))
    text = run(fast, plan_for(TINY_LTX25))
    assert np.abs(left[0].astype(int) - right[0].astype(int)).mean() > 1
    assert np.abs(left[0].astype(int) - text[0].astype(int)).mean() > 1


def test_the_same_seed_gives_the_same_clip(fast: ModelRunner) -> None:
    assert np.array_equal(run(fast, plan_for(TINY_LTX25, 5)), run(fast, plan_for(TINY_LTX25, 5)))
    assert not np.array_equal(
        run(fast, plan_for(TINY_LTX25, 5)), run(fast, plan_for(TINY_LTX25, 6))
    )


def test_the_twin_is_built_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert needs_tiny_build(TINY_LTX25_QUALITY, settings)
    load_model(TINY_LTX25_QUALITY, settings)
    assert not needs_tiny_build(TINY_LTX25, settings)
