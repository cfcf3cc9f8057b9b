"""What a request asks for acts on the tiny model's output: first frame, last frame, strength, and
the prompt the model rewrites for itself."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kinema.catalog.plan import GenerationPlan, plan_generation
from kinema.catalog.registry import TINY_LTX2, TINY_LTX2_QUALITY, ModelSpec
from kinema.config import Settings
from kinema.domain import Condition, GenerationRequest
from kinema.engine.pipelines import ModelRunner, load_engine
from kinema.media import center_crop

WIDTH, HEIGHT = 96, 54  # the tiny model's 16:9 output


def halves(bright_left: bool) -> np.ndarray:
    """A (1, H, W, 3) image: one half white, the other black."""
    image = np.zeros((1, HEIGHT, WIDTH, 3), np.uint8)
    columns = slice(None, WIDTH // 2) if bright_left else slice(WIDTH // 2, None)
    image[0, :, columns] = 255
    return image


LEFT, RIGHT = halves(True), halves(False)


def correlation(frame: np.ndarray, image: np.ndarray) -> float:
    """Of the grey levels of an output frame (center-cropped as encoded) and an image."""
    seen = center_crop(frame[np.newaxis], WIDTH, HEIGHT)[0].astype(float).mean(-1)
    shown = image[0].astype(float).mean(-1)
    seen, shown = seen - seen.mean(), shown - shown.mean()
    return float((seen * shown).sum() / np.sqrt((seen * seen).sum() * (shown * shown).sum()))


def conditioned_plan(
    spec: ModelSpec, images: list[tuple[int, np.ndarray]], seed: int = 3, **request: object
) -> GenerationPlan:
    conditions = tuple(
        Condition(key=f"j/input-{i}.png", frame=f) for i, (f, _) in enumerate(images)
    )
    fields = {"prompt": "a fox", "duration": 2, "conditions": conditions, **request}
    plan = plan_generation(GenerationRequest(model=spec.id, **fields), spec, seed=seed)
    with_pixels = [
        replace(c, pixels=px) for c, (_, px) in zip(plan.conditions, images, strict=True)
    ]
    return replace(plan, conditions=tuple(with_pixels))


def frames(engine: ModelRunner, plan: GenerationPlan) -> np.ndarray:
    return engine.generate(plan, lambda done, total: None, lambda: False).frames[
        : plan.output_frames
    ]


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path) -> dict[str, ModelRunner]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), tiny_weights=str(tiny_weights))
    return {spec.id: load_engine(spec, settings) for spec in (TINY_LTX2, TINY_LTX2_QUALITY)}


@pytest.mark.parametrize("spec", [TINY_LTX2, TINY_LTX2_QUALITY], ids=["fast", "quality"])
def test_the_first_frame_is_the_given_image(
    engines: dict[str, ModelRunner], spec: ModelSpec
) -> None:
    seed = 1
    engine = engines[spec.id]
    left = frames(engine, conditioned_plan(spec, [(0, LEFT)], seed))
    right = frames(engine, conditioned_plan(spec, [(0, RIGHT)], seed))
    assert correlation(left[0], LEFT) > 0.5 > correlation(left[0], RIGHT)
    assert correlation(right[0], RIGHT) > 0.5 > correlation(right[0], LEFT)
    text_only = frames(engine, replace(conditioned_plan(spec, [(0, LEFT)], seed), conditions=()))
    assert abs(correlation(text_only[0], LEFT)) < 0.5  # the image, not the model, made it


def test_a_last_frame_condition_reaches_the_end_of_the_clip(
    engines: dict[str, ModelRunner],
) -> None:
    """The last frame is a keyframe condition: extra tokens the transformer attends to (LTX-2's
    own mechanism). The tiny model's random transformer carries little of it, so this shows that
    it acts on the clip's end and leaves the first frame to the first image; how close the end
    comes to the image takes trained weights."""
    engine = engines[TINY_LTX2.id]
    plan = conditioned_plan(TINY_LTX2, [(0, LEFT), (-1, RIGHT)])
    assert plan.output_frames == plan.num_frames == 49  # the last frame is kept
    assert [c.latent_index for c in plan.conditions] == [0, 6]
    with_tail = frames(engine, plan)
    first_only = frames(engine, conditioned_plan(TINY_LTX2, [(0, LEFT)], duration=49 / 24))
    assert correlation(with_tail[0], LEFT) > 0.5
    assert not np.array_equal(with_tail[-8:], first_only[-8:])


def test_an_image_of_another_shape_is_cropped_to_the_clip(
    engines: dict[str, ModelRunner],
) -> None:
    wide = np.zeros((1, HEIGHT, WIDTH * 3, 3), np.uint8)
    wide[0, :, WIDTH : WIDTH + WIDTH // 2] = 255  # its middle third is LEFT
    first = frames(engines[TINY_LTX2.id], conditioned_plan(TINY_LTX2, [(0, wide)]))[0]
    assert correlation(first, LEFT) > 0.5


# -- prompt enhancement: the model's own rewrite of the prompt, seeded like the clip ----------


def generated(engine: ModelRunner, plan: GenerationPlan) -> tuple[str | None, np.ndarray]:
    clip = engine.generate(plan, lambda done, total: None, lambda: False)
    return clip.prompt_used, clip.frames


def test_enhancement_rewrites_the_prompt_and_the_clip_follows_the_rewrite(
    engines: dict[str, ModelRunner],
) -> None:
    engine = engines[TINY_LTX2.id]
    plain = conditioned_plan(TINY_LTX2, [], duration=1)
    asked = replace(plain, enhance_prompt=True)
    prompt_used, enhanced = generated(engine, asked)
    assert "prompt_enhance" in engine.last_timings
    again, enhanced_again = generated(engine, asked)
    other_seed, _ = generated(engine, replace(asked, seed=asked.seed + 1))
    plain_prompt, plain_frames = generated(engine, plain)
    assert plain_prompt is None and "prompt_enhance" not in engine.last_timings
    assert prompt_used and prompt_used != plain.prompt
    assert (again, np.array_equal(enhanced, enhanced_again)) == (prompt_used, True)
    assert other_seed != prompt_used
    assert not np.array_equal(enhanced, plain_frames)  # the rewrite, not the prompt, ran


class RecordingProcessor:
    """The pipeline's own processor, noting what the enhancer hands it."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.processor, name)

    def __call__(self, **inputs: Any) -> Any:
        self.calls.append(inputs)
        return self.processor(**inputs)


def test_enhancing_a_clip_from_an_image_shows_the_enhancer_that_image(
    engines: dict[str, ModelRunner], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiny model's four image tokens among thousands of system-prompt tokens barely move
    its sampled words, so this follows the image to the enhancer's input instead."""
    engine = engines[TINY_LTX2.id]
    recording = RecordingProcessor(engine.pipeline.processor)
    monkeypatch.setattr(engine.pipeline, "processor", recording)
    plan = replace(conditioned_plan(TINY_LTX2, [(0, LEFT)], duration=1), enhance_prompt=True)
    prompt_used, _ = generated(engine, plan)
    [call] = recording.calls
    shown = np.asarray(call["images"].convert("L"), dtype=float)  # scaled up for Gemma
    left, right = np.array_split(shown, 2, axis=1)
    assert left.mean() > 200 > 50 > right.mean()  # LEFT: white on the left, black on the right
    assert "image-to-video" in call["text"] and prompt_used
