"""The request → pipeline-argument plan."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kinema.catalog.families.wan import TINY_WAN, WAN_22, WAN_22_A14B
from kinema.catalog.plan import PLAIN_DENOISER, guidance_for, plan_generation, snap_frames
from kinema.catalog.registry import (
    DISTILLED_SIGMAS,
    LTX_2,
    LTX_2_QUALITY,
    MODELS,
    REFINE_SIGMAS,
    TINY_LTX2,
    TINY_LTX2_QUALITY,
    ModelSpec,
    ServedModels,
    get_spec,
)
from kinema.domain import Condition, GenerationRequest
from kinema.errors import ValidationFailed

SIZES = {
    "16:9": ((1920, 1088), (1920, 1080)),
    "9:16": ((1088, 1920), (1080, 1920)),
    "1:1": ((1088, 1088), (1080, 1080)),
}


@pytest.mark.parametrize("aspect_ratio", list(SIZES))
@pytest.mark.parametrize(("duration", "frames"), [(5, 121), (10, 241)])
def test_ltx2_sizes_and_frames(aspect_ratio: str, duration: int, frames: int) -> None:
    request = GenerationRequest(
        model="ltx-2", prompt="p", aspect_ratio=aspect_ratio, duration=duration
    )
    plan = plan_generation(request, LTX_2, seed=1)
    generated, output = SIZES[aspect_ratio]
    assert (plan.width, plan.height) == generated
    assert (plan.output_width, plan.output_height) == output
    assert plan.num_frames == frames
    assert plan.output_frames == duration * 24
    assert plan.fps == 24.0
    assert plan.total_steps == LTX_2.total_steps


@pytest.mark.parametrize("aspect_ratio", ["16:9", "9:16", "1:1"])
@pytest.mark.parametrize("duration", [5, 10])
def test_tiny_plans_honour_duration_and_its_declared_sizes(
    aspect_ratio: str, duration: int
) -> None:
    request = GenerationRequest(
        model="tiny-ltx2", prompt="p", aspect_ratio=aspect_ratio, duration=duration
    )
    plan = plan_generation(request, TINY_LTX2, seed=3)
    width, height = TINY_LTX2.output_sizes[aspect_ratio]
    assert (plan.output_width, plan.output_height) == (width, height)
    assert plan.width % TINY_LTX2.size_multiple == 0 and plan.width >= width
    assert plan.height % TINY_LTX2.size_multiple == 0 and plan.height >= height
    assert (plan.num_frames - 1) % TINY_LTX2.frame_multiple == 0
    assert plan.output_frames <= plan.num_frames
    assert plan.duration == duration


def test_frames_snap_to_the_nearest_valid_count() -> None:
    assert snap_frames(5, 24, 8) == 121
    assert snap_frames(5, 25, 8) == 129  # 126 frames wanted; 129 is the next 8k+1
    assert snap_frames(10, 50, 8) == 505  # 501 wanted: rounding down would cut the clip short
    assert snap_frames(0.01, 24, 8) == 9  # never fewer than one latent step


def test_cfg_scale_maps_linearly_with_half_on_the_default() -> None:
    low, high = LTX_2.guidance_range
    assert guidance_for(0.0, LTX_2) == low
    assert guidance_for(0.5, LTX_2) == LTX_2.guidance_default
    assert guidance_for(1.0, LTX_2) == high
    assert guidance_for(0.25, LTX_2) == pytest.approx((low + LTX_2.guidance_default) / 2)


def test_quality_passes_seed_prompt_negative_prompt_audio_and_guidance_through() -> None:
    request = GenerationRequest(
        model="ltx-2:quality",
        prompt="a bell",
        negative_prompt="blur",
        generate_audio=False,
        cfg_scale=1,
    )
    plan = plan_generation(request, LTX_2_QUALITY, seed=99)
    assert (plan.seed, plan.prompt, plan.negative_prompt) == (99, "a bell", "blur")
    assert plan.generate_audio is False
    base, refine = plan.stages
    assert (base.guidance_scale, base.audio_guidance_scale) == (7.0, 7.0 * 7.0 / 4.0)
    assert (base.num_inference_steps, base.sigmas, base.distilled_lora) == (40, None, False)
    assert (refine.guidance_scale, refine.sigmas, refine.distilled_lora) == (
        1.0,
        REFINE_SIGMAS,
        True,
    )
    assert plan.notes == ()


def test_fast_runs_without_cfg_and_says_it_ignores_the_negative_prompt() -> None:
    request = GenerationRequest(model="ltx-2", prompt="p", negative_prompt="blur", cfg_scale=0.9)
    plan = plan_generation(request, LTX_2, seed=1)
    assert all(stage.guidance_scale == 1.0 for stage in plan.stages)
    assert plan.negative_prompt is None
    assert any("negative_prompt" in note for note in plan.notes)


def test_enhance_prompt_reaches_the_plan_of_a_model_that_rewrites_prompts() -> None:
    request = GenerationRequest(model="ltx-2", prompt="p", enhance_prompt=True)
    plan = plan_generation(request, LTX_2, seed=1)
    assert (plan.enhance_prompt, plan.enhanced_prompt_tokens, plan.notes) == (True, None, ())
    tiny = plan_generation(replace(request, model="tiny-ltx2"), TINY_LTX2, seed=1)
    assert (tiny.enhance_prompt, tiny.enhanced_prompt_tokens) == (True, 32)
    assert (
        plan_generation(replace(request, enhance_prompt=False), LTX_2, seed=1).enhance_prompt
        is False
    )


def test_a_model_without_an_enhancer_says_it_ignored_enhance_prompt() -> None:
    spec = replace(LTX_2, enhances_prompts=False)
    request = GenerationRequest(model="ltx-2", prompt="p", enhance_prompt=True)
    plan = plan_generation(request, spec, seed=1)
    assert plan.enhance_prompt is False
    assert plan.notes == ("enhance_prompt ignored: model 'ltx-2' has no prompt enhancer",)


TWO_STAGE = {spec.id: spec for spec in MODELS.values() if spec.two_stage}


@pytest.mark.parametrize("spec", list(TWO_STAGE.values()), ids=list(TWO_STAGE))
@pytest.mark.parametrize("aspect_ratio", ["16:9", "9:16", "1:1"])
@pytest.mark.parametrize("duration", [5, 10])
def test_two_stage_presets_run_at_half_size_then_refine_at_full_size(
    spec: ModelSpec, aspect_ratio: str, duration: int
) -> None:
    request = GenerationRequest(
        model=spec.id, prompt="p", aspect_ratio=aspect_ratio, duration=duration
    )
    plan = plan_generation(request, spec, seed=5)
    base, refine = plan.stages
    assert (base.width * 2, base.height * 2) == (plan.width, plan.height)
    assert base.width % 32 == 0 and base.height % 32 == 0
    assert (refine.width, refine.height) == (plan.width, plan.height)
    assert refine.noise_scale == REFINE_SIGMAS[0] and refine.num_inference_steps == 3
    assert plan.total_steps == base.num_inference_steps + 3
    assert plan.num_frames == duration * 24 + 1 and plan.output_frames == duration * 24
    if spec.uses_cfg and spec.stages[0].uses_cfg:
        assert base.sigmas is None and base.guidance_scale > 1.0
    else:
        assert base.sigmas == DISTILLED_SIGMAS and base.num_inference_steps == 8


def test_first_stage_steps_override_applies_to_spaced_schedules_only() -> None:
    request = GenerationRequest(model="tiny-ltx2:quality", prompt="p")
    assert plan_generation(request, TINY_LTX2_QUALITY, 1, first_stage_steps=60).total_steps == 63
    assert plan_generation(request, TINY_LTX2, 1, first_stage_steps=60).total_steps == 11


def test_presets_resolve_by_id_and_fast_alias() -> None:
    assert get_spec("ltx-2:fast") is LTX_2
    assert get_spec("ltx-2:quality") is LTX_2_QUALITY
    served = ServedModels.of(["ltx-2:fast", "ltx-2:quality"])
    assert served.served == ("ltx-2", "ltx-2:quality")
    assert served.resolve("ltx-2:fast") == "ltx-2"
    assert served.resolve("klingai/video-v2-6-pro-text-to-video") == "ltx-2"


def test_served_models_answer_to_the_kling_ids() -> None:
    served = ServedModels.of(["tiny-ltx2"])
    assert served.resolve("klingai/video-v2-6-pro-text-to-video") == "tiny-ltx2"
    assert served.resolve("tiny-ltx2") == "tiny-ltx2"
    assert served.resolve("ltx-2") is None
    assert served.resolve("openai/sora-2") is None


@pytest.mark.parametrize("cfg_scale", [0.8, 0.0])
def test_the_plan_alone_decides_cfg_and_every_other_guidance(cfg_scale: float) -> None:
    request = GenerationRequest(model="tiny-ltx2:quality", prompt="p", cfg_scale=cfg_scale)
    base, refine = plan_generation(request, TINY_LTX2_QUALITY, seed=1).stages
    # The pipeline's rule, decided here: CFG runs where either modality's guidance exceeds 1
    # (at cfg_scale 0 the video's is 1.0, the audio's 1.75).
    assert base.uses_cfg and max(base.guidance_scale, base.audio_guidance_scale) > 1.0
    assert base.guidance_args() == {"stg_scale": 0.0, "audio_stg_scale": 0.0}  # the model's own
    assert not refine.uses_cfg and refine.guidance_args() == PLAIN_DENOISER  # a distilled stage
    assert "stg_scale" not in TINY_LTX2.extra_call_args, "guidance is the plan's, not the spec's"


OPENAI_SIZES = [(720, 1280), (1280, 720), (1024, 1792), (1792, 1024)]


@pytest.mark.parametrize(("width", "height"), OPENAI_SIZES)
@pytest.mark.parametrize(("seconds", "frames"), [(4, 97), (8, 193), (12, 289)])
def test_openai_sizes_and_lengths_on_ltx2(
    width: int, height: int, seconds: int, frames: int
) -> None:
    request = GenerationRequest(
        model="ltx-2", prompt="p", duration=seconds, width=width, height=height
    )
    plan = plan_generation(request, LTX_2, seed=1)
    assert (plan.output_width, plan.output_height) == (width, height)
    assert (plan.width % 64, plan.height % 64) == (0, 0)
    assert plan.width - width < 64 and plan.height - height < 64
    assert (plan.stages[0].width, plan.stages[0].height) == (plan.width // 2, plan.height // 2)
    assert (plan.num_frames, plan.output_frames, plan.duration) == (frames, seconds * 24, seconds)


@pytest.mark.parametrize(
    ("resolution", "generated", "first_stage"),
    [
        ((1920, 1080), (1920, 1088), (960, 544)),
        ((2560, 1440), (2560, 1472), (1280, 736)),
        ((3840, 2160), (3840, 2176), (1920, 1088)),
    ],
    ids=["1080p", "1440p", "2160p"],
)
@pytest.mark.parametrize("spec", [LTX_2, LTX_2_QUALITY], ids=["fast", "quality"])
def test_ltxv_resolutions_plan_through_the_latent_upsampler(
    spec: ModelSpec,
    resolution: tuple[int, int],
    generated: tuple[int, int],
    first_stage: tuple[int, int],
) -> None:
    width, height = resolution
    request = GenerationRequest(
        model=spec.id, prompt="p", duration=6, width=width, height=height, fps=25.0
    )
    plan = plan_generation(request, spec, seed=1)
    assert (plan.output_width, plan.output_height) == resolution
    assert (plan.width, plan.height) == generated
    assert [(s.width, s.height) for s in plan.stages] == [first_stage, generated]
    assert (plan.num_frames, plan.output_frames, plan.fps) == (153, 150, 25.0)
    assert [s.distilled_lora for s in plan.stages][-1]  # the refine after 2x upsampling


def refusal(request: GenerationRequest, spec: ModelSpec) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as refused:
        plan_generation(request, spec, seed=1)
    return [(error.field, error.message) for error in refused.value.errors]


def test_what_a_model_cannot_make_is_refused_naming_the_field() -> None:
    base = GenerationRequest(model="tiny-ltx2", prompt="p")
    size = refusal(replace(base, width=2560, height=1440), TINY_LTX2)
    assert size == [
        (
            "size",
            "2560x1440 is too large; tiny-ltx2 makes even sizes with sides of 32..1920 and "
            "at most 2,073,600 pixels",
        )
    ]
    assert refusal(replace(base, width=97, height=54), TINY_LTX2)[0][1].startswith(
        "97x54 is not even"
    )
    assert refusal(replace(base, duration=25), TINY_LTX2) == [
        ("duration", "25 s: tiny-ltx2 makes 1..20 s")
    ]
    assert refusal(replace(base, fps=60.0), TINY_LTX2) == [
        ("fps", "60: tiny-ltx2 makes 24, 25, 30, 48, 50 frames per second")
    ]
    fields = [field for field, _ in refusal(replace(base, duration=0.5, fps=7.0), TINY_LTX2)]
    assert fields == ["duration", "fps"]  # every problem at once


def test_a_video_only_model_refuses_sound_and_text_only_models_refuse_images() -> None:
    """Sound asked for is refused, never a silent clip; left out, it is the model's own choice."""
    silent = replace(TINY_LTX2, id="silent", has_audio=False, condition_pipeline="")
    request = GenerationRequest(model="silent", prompt="p", generate_audio=True)
    assert refusal(request, silent) == [
        ("generate_audio", "silent makes video without sound; send false")
    ]
    for left_out_or_off in (None, False):
        plan = plan_generation(replace(request, generate_audio=left_out_or_off), silent, seed=1)
        assert not plan.generate_audio
    assert plan_generation(replace(request, generate_audio=None), TINY_LTX2, 1).generate_audio
    with_image = replace(request, generate_audio=False, conditions=(Condition("j/input-0.png"),))
    assert refusal(with_image, silent) == [("image_url", "silent makes video from text only")]


@pytest.mark.parametrize("spec", [WAN_22, MODELS["kandinsky-6"]], ids=["wan", "kandinsky"])
def test_a_first_frame_model_refuses_other_frames_and_clips_naming_their_fields(
    spec: ModelSpec,
) -> None:
    """Wan and Kandinsky 6 take one image, as the first frame: a last frame, a frame between, a
    remix or an extension is a 400 naming its field, not a job that fails on the worker."""
    base = GenerationRequest(model=spec.id, prompt="p", duration=2)
    first = Condition("j/input-0.png", 0)
    assert plan_generation(replace(base, conditions=(first,)), spec, seed=1).conditions
    others = {
        "tail_image_url": Condition("j/input-1.png", -1),
        "conditions": Condition("j/input-1.png", 24),
        "video": Condition("j/clip.mp4", kind="video"),
    }
    for field, condition in others.items():
        [(named, message)] = refusal(replace(base, conditions=(first, condition)), spec)
        assert named == field and message.startswith(f"{spec.id} takes a first frame only, not")
    assert "remix or extend" in refusal(replace(base, conditions=(others["video"],)), spec)[0][1]


def test_conditions_land_on_latent_frames() -> None:
    conditions = tuple(
        Condition(f"j/input-{i}.png", frame=frame) for i, frame in enumerate([0, 5, 8, 9, -1, 999])
    )
    request = GenerationRequest(model="ltx-2", prompt="p", duration=5, conditions=conditions)
    plan = plan_generation(request, LTX_2, seed=1)
    assert [c.latent_index for c in plan.conditions] == [0, 1, 1, 2, 15, 15]
    assert plan.output_frames == plan.num_frames == 121  # a condition on the last frame keeps it
    first_only = replace(request, conditions=conditions[:1])
    assert plan_generation(first_only, LTX_2, seed=1).output_frames == 120


@pytest.mark.parametrize(
    ("spec", "size", "frames"),
    [(WAN_22, (1280, 704), 121), (WAN_22_A14B, (1280, 720), 81), (TINY_WAN, (96, 64), 121)],
    ids=["ti2v-5b", "t2v-a14b", "tiny"],
)
def test_wan_runs_one_stage_at_its_size_and_rate_in_4k_plus_1_frames(
    spec: ModelSpec, size: tuple[int, int], frames: int
) -> None:
    request = GenerationRequest(
        model=spec.id, prompt="p", duration=5, generate_audio=False, negative_prompt="blur"
    )
    plan = plan_generation(request, spec, seed=1)
    (stage,) = plan.stages
    assert (stage.width, stage.height) == (plan.width, plan.height) == size
    assert plan.num_frames == frames and (plan.num_frames - 1) % 4 == 0
    assert plan.output_frames == round(5 * spec.fps) and plan.fps == spec.fps
    assert stage.uses_cfg and stage.guidance_scale == spec.guidance_default
    assert plan.negative_prompt == "blur" and plan.generate_audio is False


def test_wan_refuses_sound_and_shapes_it_does_not_make() -> None:
    request = GenerationRequest(
        model="wan-2.2", prompt="p", aspect_ratio="1:1", generate_audio=True
    )
    assert refusal(request, WAN_22) == [
        ("aspect_ratio", "wan-2.2 makes 16:9, 9:16"),
        ("generate_audio", "wan-2.2 makes video without sound; send false"),
    ]


def test_ltx_2_5_quality_follows_lightricks_recipe_and_fast_runs_the_distilled_checkpoint() -> None:
    quality = MODELS["ltx-2.5:quality"]
    request = GenerationRequest(model=quality.id, prompt="p", enhance_prompt=True)
    first, refine = plan_generation(request, quality, seed=1).stages
    assert (first.num_inference_steps, first.uses_cfg, first.guidance_scale) == (30, True, 3.0)
    assert (first.stg_scale, first.modality_scale) == (None, None)  # the pipeline's: 1 and 3
    assert refine.distilled_lora and refine.sigmas and not refine.uses_cfg
    assert quality.transformer_subfolder == "transformer_full"
    fast = MODELS["ltx-2.5"]
    plan = plan_generation(replace(request, model=fast.id), fast, seed=1)
    assert not any(stage.distilled_lora or stage.uses_cfg for stage in plan.stages)
    assert fast.transformer_subfolder == "" and fast.weights == quality.weights
    assert plan.notes == ("enhance_prompt ignored: model 'ltx-2.5' has no prompt enhancer",)


def test_every_real_model_names_a_tiny_twin_of_its_family() -> None:
    """What stands in for it on a CPU (the GPU benchmark's): built locally, the same engine."""
    for spec in MODELS.values():
        if spec.weights:
            twin = MODELS[spec.tiny_twin]
            assert (twin.family, twin.weights) == (spec.family, ""), spec.id
            assert twin.id.endswith(":quality") == spec.id.endswith(":quality"), spec.id
