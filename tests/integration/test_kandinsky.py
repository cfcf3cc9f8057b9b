"""The Kandinsky 6 engine on a CPU: the tiny twin runs Kandinsky6TI2VAPipeline, text or a first
frame to video with 44.1 kHz sound, through the same code as the real checkpoints."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from kinema.catalog.families.kandinsky import TINY_KANDINSKY
from kinema.catalog.plan import GenerationPlan, plan_generation
from kinema.config import Settings
from kinema.domain import Condition, GenerationRequest
from kinema.engine.families import load_model
from kinema.engine.kandinsky import KandinskyRunner
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
