"""The Wan 2.2 engine on a CPU: the tiny twin runs WanPipeline (text) and WanImageToVideoPipeline
(a first frame) through the same code as the real TI2V-5B."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from kinema.catalog.families.wan import TINY_WAN, WAN_22, WAN_22_A14B
from kinema.catalog.plan import GenerationPlan, plan_generation
from kinema.catalog.spec import ModelSpec, StageSpec
from kinema.config import Settings
from kinema.domain import Condition, GenerationRequest, LoraChoice
from kinema.engine.components import needs_tiny_build
from kinema.engine.families import load_model
from kinema.engine.wan import REAL_CONFIGS, WanRunner, random_real_pipeline, real_size_models
from kinema.errors import GenerationCanceled
from kinema.media import fit_to_canvas
from tests.pictures import half_white


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> WanRunner:
    runner = load_model(TINY_WAN, Settings(data_dir=tmp_path_factory.mktemp("wan")))
    assert isinstance(runner, WanRunner)
    return runner


def text_plan(seed: int = 3, **fields: object) -> GenerationPlan:
    request = GenerationRequest(model=TINY_WAN.id, prompt="a fox", duration=2, **fields)
    return plan_generation(request, TINY_WAN, seed)


def image_plan(picture: np.ndarray, seed: int = 3) -> GenerationPlan:
    plan = text_plan(seed, conditions=(Condition("j/input-0.png", 0),))
    canvas = fit_to_canvas(
        picture, (plan.output_width, plan.output_height), (plan.width, plan.height)
    )
    return replace(plan, conditions=(replace(plan.conditions[0], pixels=canvas),))


def run(engine: WanRunner, plan: GenerationPlan) -> np.ndarray:
    clip = engine.generate(plan, lambda done, total: None, lambda: False)
    assert clip.audio is None and clip.fps == plan.fps == 24.0
    return clip.frames


def test_a_clip_has_the_planned_frames_at_the_generated_size_and_no_sound(
    engine: WanRunner,
) -> None:
    plan = text_plan()
    steps: list[tuple[int, int]] = []
    clip = engine.generate(plan, lambda done, total: steps.append((done, total)), lambda: False)
    assert clip.frames.shape == (49, 64, 96, 3) and clip.frames.dtype == np.uint8
    assert (plan.num_frames, plan.output_frames) == (49, 48)
    assert steps == [(1, 2), (2, 2)] and clip.audio is None
    assert set(engine.last_timings) == {"stage1"}


def test_the_same_seed_gives_the_same_frames_and_another_seed_others(engine: WanRunner) -> None:
    first, again, other = (run(engine, text_plan(seed)) for seed in (3, 3, 4))
    assert np.array_equal(first, again)
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 1


def test_a_first_frame_acts_on_the_clip_from_its_start(engine: WanRunner) -> None:
    """The tiny twin's random VAE does not give the picture back, so this shows that the image
    reaches the pipeline and moves the first frames, not that they look like it."""
    left = run(engine, image_plan(np.asarray(half_white(96, 54))[np.newaxis]))
    right = run(engine, image_plan(np.asarray(half_white(96, 54, mirrored=True))[np.newaxis]))
    text = run(engine, text_plan())
    assert np.abs(left[0].astype(int) - right[0].astype(int)).mean() > 1
    assert np.abs(left[0].astype(int) - text[0].astype(int)).mean() > 1


def test_a_cancel_stops_at_the_next_step(engine: WanRunner) -> None:
    seen: list[int] = []
    with pytest.raises(GenerationCanceled):
        engine.generate(text_plan(), lambda done, total: seen.append(done), lambda: bool(seen))
    assert seen == [1]


def test_the_tiny_twin_is_built_once_and_loads_again(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    built = settings.models_dir / "tiny-wan-2.2"
    assert needs_tiny_build(TINY_WAN, settings)  # what a local generate reports as a phase
    load_model(TINY_WAN, settings)
    assert not needs_tiny_build(TINY_WAN, settings)
    marker = (built / "kinema-tiny.json").stat().st_mtime_ns
    assert {"transformer", "vae", "text_encoder", "tokenizer", "scheduler"} <= {
        path.name for path in built.iterdir()
    }
    again = load_model(TINY_WAN, settings)
    assert (built / "kinema-tiny.json").stat().st_mtime_ns == marker
    assert np.array_equal(run(again, text_plan()), run(load_model(TINY_WAN, settings), text_plan()))


def test_a_lora_acts_on_wan_and_the_base_weights_come_back(tmp_path: Path) -> None:
    lora_dir = tmp_path / "loras"
    (lora_dir / "tiny-wan-2.2").mkdir(parents=True)
    settings = Settings(data_dir=tmp_path / "data", lora_dir=lora_dir)
    runner = load_model(TINY_WAN, settings)
    save_file(
        peft_lora(runner.pipeline.transformer), str(lora_dir / "tiny-wan-2.2" / "ink.safetensors")
    )
    base = run(runner, text_plan())
    inked = run(runner, replace(text_plan(), loras=(LoraChoice("ink"),)))
    assert np.abs(inked.astype(int) - base.astype(int)).mean() > 0.1
    assert np.array_equal(run(runner, text_plan()), base)


def peft_lora(transformer: torch.nn.Module, rank: int = 4) -> dict[str, torch.Tensor]:
    """Rank-`rank` pairs for every linear layer of the transformer's blocks (diffusers' keys)."""
    generator = torch.Generator().manual_seed(5)
    tensors = {}
    for name, module in transformer.named_modules():
        if name.startswith("blocks.") and isinstance(module, torch.nn.Linear):
            out_features, in_features = module.weight.shape
            down = torch.randn(rank, in_features, generator=generator) * 0.1
            tensors[f"transformer.{name}.lora_A.weight"] = down
            tensors[f"transformer.{name}.lora_B.weight"] = (
                torch.randn(out_features, rank, generator=generator) * 0.1
            )
    return tensors


@pytest.mark.parametrize(
    ("model_id", "counts", "published"),
    [
        ("wan-2.2", (4_999_787_712, 704_688_668, 5_680_910_336), 5e9),
        ("wan-2.2:a14b", (14_288_491_584, 126_892_531, 5_680_910_336), 14e9),
    ],
    ids=["ti2v-5b", "t2v-a14b"],
)
def test_the_real_size_configs_have_the_published_parameter_counts(
    model_id: str, counts: tuple[int, int, int], published: float
) -> None:
    """Published: TI2V-5B "a 5B dense model"; A14B "each expert model has about 14B parameters"
    (two experts, 27B in all); umt5-xxl's encoder 5.7B. Built on the meta device: no memory."""
    models = real_size_models(model_id)
    found = tuple(
        sum(p.numel() for p in models[name].parameters())
        for name in ("transformer", "vae", "text_encoder")
    )
    assert found == counts
    assert abs(found[0] - published) / published < 0.03


def shrunken_configs(tmp_path: Path) -> Path:
    """The real-size config files with a few layers and narrow widths: the same builder and
    classes, small enough for a CPU."""
    narrow = {"num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 16}
    narrow |= {"ffn_dim": 32, "text_dim": 32}
    encoder = {"d_model": 32, "d_ff": 32, "d_kv": 16, "num_layers": 1, "num_heads": 2}
    changes: dict[str, dict[str, object]] = {
        "transformer_ti2v_5b.json": narrow,
        "transformer_t2v_a14b.json": narrow,
        "vae_2_2.json": {"base_dim": 8, "decoder_base_dim": 8},
        "vae_2_1.json": {"base_dim": 8},
        "text_encoder.json": encoder,
    }
    for name, change in changes.items():
        config = json.loads((REAL_CONFIGS / name).read_text()) | change
        (tmp_path / name).write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize("spec", [WAN_22, WAN_22_A14B], ids=["ti2v-5b", "t2v-a14b"])
def test_the_random_real_size_build_runs_a_clip(spec: ModelSpec, tmp_path: Path) -> None:
    """What the GPU benchmark builds for Wan (random weights from the config files, one expert or
    two), here from narrowed copies of the configs, makes a clip through the engine."""
    device = torch.device("cpu")
    pipeline, facts = random_real_pipeline(
        spec.id, device, torch.float32, configs_dir=shrunken_configs(tmp_path)
    )
    assert (pipeline.transformer_2 is not None) == (spec is WAN_22_A14B)
    parameters = facts["parameters"]
    assert isinstance(parameters, dict) and parameters["text_encoder"] > 256_384 * 32
    small = replace(spec, stages=(StageSpec(steps=2),))
    request = GenerationRequest(model=spec.id, prompt="a fox", width=256, height=256, duration=1)
    plan = plan_generation(request, small, seed=1)
    clip = WanRunner(small, pipeline, device).generate(plan, lambda d, t: None, lambda: False)
    assert clip.frames.shape == (plan.num_frames, 256, 256, 3) and clip.audio is None
    assert clip.frames.std() > 0
