"""The Kandinsky 6 engine on a CPU: the tiny twin runs Kandinsky6TI2VAPipeline, text or a first
frame to video with 44.1 kHz sound, through the same code as the real checkpoints."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from kinema.catalog.families.kandinsky import KANDINSKY_6, TINY_KANDINSKY
from kinema.catalog.plan import GenerationPlan, plan_generation
from kinema.catalog.spec import StageSpec
from kinema.config import Settings
from kinema.domain import Condition, GenerationRequest
from kinema.engine.families import load_model
from kinema.engine.kandinsky import (
    REAL_CONFIGS,
    KandinskyRunner,
    random_real_pipeline,
    real_size_models,
)
from kinema.engine.random_init import count_parameters
from kinema.media import fit_to_canvas
from tests.pictures import half_white


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> KandinskyRunner:
    runner = load_model(TINY_KANDINSKY, Settings(data_dir=tmp_path_factory.mktemp("k6")))
    assert isinstance(runner, KandinskyRunner)
    return runner


def plan_for(**fields: object) -> GenerationPlan:
    request = GenerationRequest(model=TINY_KANDINSKY.id, prompt="a fox", duration=2, **fields)
    return plan_generation(request, TINY_KANDINSKY, seed=3)


def test_a_clip_has_its_frames_and_sound_of_the_same_length(engine: KandinskyRunner) -> None:
    plan = plan_for()
    clip = engine.generate(plan, lambda done, total: None, lambda: False)
    assert clip.frames.shape == (plan.num_frames, 64, 96, 3) == (49, 64, 96, 3)
    assert clip.audio is not None and clip.audio.shape[0] == 1 and clip.sample_rate == 44_100
    assert clip.audio.shape[1] / clip.sample_rate == pytest.approx(49 / 24, abs=0.05)
    assert np.abs(clip.audio).max() <= 1.0


def test_without_sound_the_clip_has_none(engine: KandinskyRunner) -> None:
    clip = engine.generate(plan_for(generate_audio=False), lambda d, t: None, lambda: False)
    assert clip.audio is None


def test_a_first_frame_acts_on_the_clip(engine: KandinskyRunner) -> None:
    plan = plan_for(conditions=(Condition("j/input-0.png", 0),))
    picture = np.asarray(half_white(96, 54))[np.newaxis]
    pixels = fit_to_canvas(picture, (96, 54), (plan.width, plan.height))
    with_image = replace(plan, conditions=(replace(plan.conditions[0], pixels=pixels),))
    from_image = engine.generate(with_image, lambda d, t: None, lambda: False).frames
    from_text = engine.generate(plan_for(), lambda d, t: None, lambda: False).frames
    assert np.abs(from_image[0].astype(int) - from_text[0].astype(int)).mean() > 1


def shrunken_configs(tmp_path: Path) -> Path:
    """The real-size config files with one or two layers and narrow widths (vocabularies and
    sample rates kept): the same builder and classes, small enough for a CPU."""
    qwen = json.loads((REAL_CONFIGS / "text_encoder.json").read_text())
    qwen["text_config"] |= {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "rope_scaling": {"type": "mrope", "rope_type": "default", "mrope_section": [2, 2, 4]},
    }
    qwen["vision_config"] |= {
        "depth": 1,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_heads": 2,
        "out_hidden_size": 32,
        "fullatt_block_indexes": [0],
    }
    changes: dict[str, dict[str, object]] = {
        "transformer_lite.json": {
            "in_text_dim": 32,
            "in_text_dim2": 16,
            "model_dim": 16,
            "model_dim_a": 8,
            "ff_dim": 32,
            "ff_dim_a": 16,
            "time_dim": 16,
            "time_dim_a": 16,
            "axes_dims": [2, 2, 4],
            "axes_dims_a": [2, 2, 4],
            "num_text_blocks": 1,
            "num_visual_blocks": 1,
        },
        "vae.json": {
            "block_out_channels": [8, 8, 8, 8],
            "norm_num_groups": 2,
            "layers_per_block": 1,
        },
        "audio_vae.json": {"hidden_channels": 8, "layers_per_block": 1},
        "vocoder.json": {
            "upsample_initial_channel": 64,
            "resblock_kernel_sizes": [3],
            "resblock_dilation_sizes": [[1]],
        },
        "text_encoder_2.json": {
            "hidden_size": 16,
            "intermediate_size": 32,
            "projection_dim": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        "text_encoder.json": qwen,
        "scheduler.json": {},
    }
    for name, change in changes.items():
        config = json.loads((REAL_CONFIGS / name).read_text()) | change
        (tmp_path / name).write_text(json.dumps(config))
    return tmp_path


def test_the_random_real_size_build_runs_a_clip_with_sound(tmp_path: Path) -> None:
    """What the GPU benchmark builds for Kandinsky 6 (random weights from the config files),
    here from narrowed copies of them, makes a clip with sound through the engine."""
    device = torch.device("cpu")
    pipeline, facts = random_real_pipeline(
        KANDINSKY_6.id, device, torch.float32, configs_dir=shrunken_configs(tmp_path)
    )
    parameters = facts["parameters"]
    assert isinstance(parameters, dict) and parameters["text_encoder"] > 152_064 * 32
    small = replace(KANDINSKY_6, stages=(StageSpec(steps=2),))
    request = GenerationRequest(model=small.id, prompt="a fox", width=128, height=128, duration=1)
    plan = plan_generation(request, small, seed=1)
    clip = KandinskyRunner(small, pipeline, device).generate(plan, lambda d, t: None, lambda: False)
    assert clip.frames.shape == (plan.num_frames, 128, 128, 3) and clip.frames.std() > 0
    assert clip.audio is not None and clip.sample_rate == 44_100


def test_the_real_size_configs_have_the_published_parameter_counts() -> None:
    """Published: Lite's transformer 3.2B and Pro's 30.1B (FastVideo's Kandinsky 6 guide; the
    model cards round to 3B and 29B), Qwen2.5-VL-7B 8.292B, BigVGAN-v2 44 kHz 122M. Built on
    the meta device: no memory."""
    lite = real_size_models("transformer_lite")
    counts = {name: count_parameters(model) for name, model in lite.items()}
    assert counts == {
        "transformer": 3_176_632_424,
        "vae": 246_478_803,
        "audio_vae": 305_479_682,
        "vocoder": 122_152_752,
        "text_encoder": 8_292_166_656,
        "text_encoder_2": 123_060_480,
    }
    assert round(counts["transformer"] / 1e8) == 32
    assert round(counts["text_encoder"] / 1e6) == 8292 and round(counts["vocoder"] / 1e6) == 122
    pro = real_size_models("transformer_pro")["transformer"]
    assert round(count_parameters(pro) / 1e8) == 301
