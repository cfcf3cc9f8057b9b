"""The engine on a CPU: the tiny model is built offline, loaded and run through every code path."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from diffusers import LTX2Pipeline

from kinema.config import Settings
from kinema.domain import GenerationRequest
from kinema.engine.pipelines import Engine, load_engine
from kinema.engine.plan import GenerationPlan, plan_generation
from kinema.engine.registry import LTX_2, TINY_LTX2
from kinema.engine.tiny import TINY_DIR_NAME, build_tiny_ltx2, ensure_tiny_ltx2
from kinema.errors import GenerationCanceled, ModelUnavailable


def tiny_plan(seed: int = 7, **request: object) -> GenerationPlan:
    fields = {"prompt": "a red fox jumps over a fence", "duration": 5, **request}
    return plan_generation(GenerationRequest(model="tiny-ltx2", **fields), TINY_LTX2, seed=seed)


def never() -> bool:
    return False


def ignore_steps(done: int, total: int) -> None:
    pass


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The tiny model gains nothing from threads; on a busy 2-core box they spin, 10-30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Engine:
    """Loading the tiny model with no weights setting builds it into the models dir, once."""
    return load_engine(TINY_LTX2, settings)


@pytest.fixture(scope="session")
def model_dir(engine: Engine, settings: Settings) -> Path:
    return settings.models_dir / TINY_DIR_NAME


def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub reads HF_HUB_OFFLINE once, at import; patch its constant as well."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_tiny_model_is_built_offline_and_reloads(model_dir: Path) -> None:
    pipeline = LTX2Pipeline.from_pretrained(model_dir, dtype=torch.float32)

    assert pipeline.vae.spatial_compression_ratio == 32
    assert pipeline.vae.temporal_compression_ratio == 8
    assert ensure_tiny_ltx2(model_dir.parent) == model_dir


def test_tiny_build_is_deterministic_and_atomic(model_dir: Path, tmp_path: Path) -> None:
    build_tiny_ltx2(tmp_path / "again")

    weights = sorted(path.relative_to(model_dir) for path in model_dir.rglob("*.safetensors"))
    assert len(weights) == 6
    for relative in weights:
        assert (tmp_path / "again" / relative).read_bytes() == (model_dir / relative).read_bytes()
    assert [path.name for path in tmp_path.iterdir()] == ["again"]


def test_concurrent_ensure_builds_one_whole_model(model_dir: Path, tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        built = list(pool.map(ensure_tiny_ltx2, [tmp_path, tmp_path]))

    assert built == [tmp_path / TINY_DIR_NAME] * 2
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        f".{TINY_DIR_NAME}.lock",
        TINY_DIR_NAME,
    ]
    assert (built[0] / "model_index.json").read_bytes() == (
        model_dir / "model_index.json"
    ).read_bytes()


def test_tiny_weights_setting_overrides_the_build(model_dir: Path, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, tiny_weights=str(model_dir))

    assert load_engine(TINY_LTX2, settings).spec is TINY_LTX2
    assert not settings.models_dir.exists()


def test_generate_five_seconds(engine: Engine) -> None:
    plan = tiny_plan()
    clip = engine.generate(plan, ignore_steps, never)

    assert clip.frames.shape == (121, plan.height, plan.width, 3)
    assert (plan.width, plan.height) == (96, 64)
    assert clip.frames.dtype == np.uint8
    assert clip.fps == 24.0
    assert clip.audio is not None
    assert clip.audio.dtype == np.float32
    assert clip.audio.shape[0] in (1, 2)
    assert np.abs(clip.audio).max() <= 1.0
    assert clip.audio.shape[1] / clip.sample_rate == pytest.approx(121 / 24, abs=0.05)


@pytest.mark.parametrize(("aspect_ratio", "size"), [("9:16", (64, 96)), ("1:1", (64, 64))])
def test_generate_other_aspect_ratios(
    engine: Engine, aspect_ratio: str, size: tuple[int, int]
) -> None:
    clip = engine.generate(tiny_plan(aspect_ratio=aspect_ratio), ignore_steps, never)

    width, height = size
    assert clip.frames.shape == (121, height, width, 3)


def test_ten_seconds_keeps_audio_in_step(engine: Engine) -> None:
    clip = engine.generate(tiny_plan(duration=10), ignore_steps, never)

    assert clip.frames.shape[0] == 241
    assert clip.audio is not None
    assert clip.audio.shape[1] / clip.sample_rate == pytest.approx(241 / 24, abs=0.05)


def test_same_seed_same_clip_other_seed_other_frames(engine: Engine) -> None:
    first = engine.generate(tiny_plan(seed=7), ignore_steps, never)
    again = engine.generate(tiny_plan(seed=7), ignore_steps, never)
    other = engine.generate(tiny_plan(seed=8), ignore_steps, never)

    assert np.array_equal(first.frames, again.frames)
    assert first.audio is not None and again.audio is not None
    assert np.array_equal(first.audio, again.audio)
    assert not np.array_equal(first.frames, other.frames)


def test_on_step_reports_every_step(engine: Engine) -> None:
    calls: list[tuple[int, int]] = []
    plan = tiny_plan()
    engine.generate(plan, lambda done, total: calls.append((done, total)), never)

    total = plan.num_inference_steps
    assert calls == [(step, total) for step in range(1, total + 1)]


def test_cancel_interrupts_and_discards(engine: Engine) -> None:
    calls: list[tuple[int, int]] = []

    def canceled_after_first_step() -> bool:
        return len(calls) >= 1

    with pytest.raises(GenerationCanceled):
        engine.generate(tiny_plan(), lambda d, t: calls.append((d, t)), canceled_after_first_step)
    assert len(calls) == 1
    assert engine.generate(tiny_plan(), ignore_steps, never).frames.shape[0] == 121


def test_without_audio_the_clip_has_none(engine: Engine) -> None:
    plan = tiny_plan(generate_audio=False)
    clip = engine.generate(plan, ignore_steps, never)

    assert clip.audio is None
    assert clip.frames.shape[0] == 121


def test_call_args_come_from_the_plan(engine: Engine) -> None:
    plan = replace(tiny_plan(negative_prompt="blurry"), guidance_scale=2.5)
    args = engine.call_args(plan)

    assert args["negative_prompt"] == "blurry"
    assert args["guidance_scale"] == 2.5
    assert args["frame_rate"] == plan.fps
    assert args["max_sequence_length"] == TINY_LTX2.max_sequence_length
    assert args["generator"].initial_seed() == plan.seed
    assert args["stg_scale"] == 0.0


def test_missing_local_weights_name_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline(monkeypatch)
    settings = Settings(data_dir=tmp_path, ltx2_weights=str(tmp_path / "nowhere"))

    with pytest.raises(ModelUnavailable, match="KINEMA_LTX2_WEIGHTS") as caught:
        load_engine(LTX_2, settings)
    assert str(tmp_path / "nowhere") in str(caught.value)


def test_unreachable_hub_id_names_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline(monkeypatch)
    settings = Settings(data_dir=tmp_path, ltx2_weights="kinema-tests/no-such-model")

    with pytest.raises(ModelUnavailable, match="KINEMA_LTX2_WEIGHTS") as caught:
        load_engine(LTX_2, settings)
    assert "kinema-tests/no-such-model" in str(caught.value)
