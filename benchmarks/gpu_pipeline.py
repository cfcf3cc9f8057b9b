"""One warm 5 s clip of a catalog model at its native size, stage by stage, on one GPU; one JSON
line out.

Builds the model's real-size components (LTX-2 by default: transformer, video and audio VAEs,
vocoder, latent upsampler, Gemma-3 text encoder; `--model` picks any real-size model: LTX-2.3,
LTX-2.5, Wan 2.2 TI2V-5B and A14B, Kandinsky 6) from the configs in src/kinema/engine/configs
with random weights directly on the GPU in bf16 — nothing is downloaded — then runs kinema's own
engine on them: a warm-up clip (compilation happens here), then the timed clip. Random weights
make noise, but noise costs exactly what a real clip costs. On a machine without CUDA it runs the
model's tiny twin instead (built and loaded as a worker does) and prints the same JSON shape
(this is how CI checks the script).

    python benchmarks/gpu_pipeline.py                       # ltx-2, fast preset, compile on
    python benchmarks/gpu_pipeline.py --preset quality      # CFG first stage (LTX-2: 40 steps)
    python benchmarks/gpu_pipeline.py --model wan-2.2:a14b  # any real-size catalog model
    python benchmarks/gpu_pipeline.py --fp8 --step-cache first_block --no-compile
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from kinema.catalog.plan import GenerationPlan, plan_generation
from kinema.catalog.registry import MODELS, ModelSpec
from kinema.catalog.runner import ClipRunner
from kinema.config import Settings
from kinema.domain import GenerationRequest
from kinema.engine.random_models import random_runner, tiny_twin
from kinema.errors import ValidationFailed
from kinema.media import encode_mp4

HOSTED_SECONDS = 150.0  # the hosted API's wall time for a 5 s 1080p clip
TARGET_SECONDS = 15.0
REAL_TEXT_ENCODER_MIN_GIB = 100
REAL_SIZE_MODELS = [spec.id for spec in MODELS.values() if spec.weights]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=REAL_SIZE_MODELS, default="ltx-2")
    parser.add_argument(
        "--preset", choices=["fast", "quality"], default="fast", help="quality: <model>:quality"
    )
    parser.add_argument("--duration", type=int, choices=[5, 10], default=5)
    parser.add_argument("--aspect-ratio", choices=["16:9", "9:16", "1:1"], default="16:9")
    parser.add_argument("--no-compile", action="store_true", help="skip regional torch.compile")
    parser.add_argument("--fp8", action="store_true", help="torchao float8 transformer")
    parser.add_argument("--step-cache", choices=["none", "first_block", "mag", "taylorseer"])
    parser.add_argument(
        "--text-encoder",
        choices=["auto", "real", "small"],
        default="auto",
        help="Gemma-3 12B, or 2 layers of it (auto: real where it fits beside the 19B model)",
    )
    parser.add_argument("--attention-backend", default="auto")
    parser.add_argument("--force-tiny", action="store_true", help="the tiny twin even on a GPU")
    return parser.parse_args()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def text_encoder_for(choice: str, device: torch.device) -> str:
    """The real 12B encoder next to the 19B model needs ~69 GB of weights: more than an H100 has
    to spare for 1080p activations, well within an H200."""
    if choice != "auto":
        return choice
    total_gib = torch.cuda.get_device_properties(device).total_memory / 2**30
    return "real" if total_gib >= REAL_TEXT_ENCODER_MIN_GIB else "small"


def chosen_spec(args: argparse.Namespace) -> ModelSpec:
    """`--model`, with `--preset quality` meaning its `:quality` preset."""
    if args.preset == "fast" or args.model.endswith(":quality"):
        return MODELS[args.model]
    quality = f"{args.model.split(':')[0]}:quality"
    if quality not in MODELS:
        raise SystemExit(f"{args.model} has no quality preset")
    return MODELS[quality]


def refuse_unapplied_flags(args: argparse.Namespace, spec: ModelSpec) -> None:
    """The speed flags act on the LTX-2 engine only: elsewhere they would change nothing."""
    given = {
        "--fp8": args.fp8,
        "--step-cache": args.step_cache not in (None, "none"),
        "--text-encoder": args.text_encoder != "auto",
        "--attention-backend": args.attention_backend != "auto",
        "--no-compile": args.no_compile,
    }
    unapplied = [flag for flag, set_ in given.items() if set_]
    if spec.family != "ltx2" and unapplied:
        raise SystemExit(f"{', '.join(unapplied)}: the {spec.family} engine has no such setting")


def planned(args: argparse.Namespace, spec: ModelSpec) -> GenerationPlan:
    """The clip asked for, as `spec` makes it; what it cannot make ends the run, with why."""
    request = GenerationRequest(
        model=spec.id,
        prompt="a benchmark",
        aspect_ratio=aspect_ratio_for(spec, args.aspect_ratio),
        duration=args.duration,
    )
    try:
        return plan_generation(request, spec, seed=0)
    except ValidationFailed as refused:
        raise SystemExit(f"{spec.id}: {refused}") from None


def aspect_ratio_for(spec: ModelSpec, wanted: str) -> str:
    """`wanted` where the model has a native size for it, else its first (Wan: no 1:1)."""
    return wanted if wanted in spec.output_sizes else next(iter(spec.output_sizes))


def settings_for(args: argparse.Namespace, data_dir: Path, device: torch.device) -> Settings:
    return Settings(
        data_dir=data_dir,
        device=str(device),
        compile="off" if args.no_compile else "auto",
        fp8=args.fp8,
        step_cache=args.step_cache or "none",
        attention_backend=args.attention_backend,
        offload="none",
    )


def timed_clip(engine: ClipRunner, plan: GenerationPlan, device: torch.device) -> dict[str, float]:
    steps: list[float] = []
    sync(device)
    start = time.perf_counter()
    clip = engine.generate(
        plan, lambda done, total: steps.append(time.perf_counter()), lambda: False
    )
    sync(device)
    generate_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        encode_start = time.perf_counter()
        encode_mp4(clip, Path(tmp) / "clip.mp4", size=(plan.output_width, plan.output_height))
        encode_s = time.perf_counter() - encode_start
    return {**engine.last_timings, "generate": generate_s, "mp4_encode": encode_s}


def main() -> None:
    args = parse_args()
    cuda = torch.cuda.is_available() and not args.force_tiny
    device = torch.device("cuda" if cuda else "cpu")
    mode = "real" if cuda else "tiny"
    chosen = chosen_spec(args)
    refuse_unapplied_flags(args, chosen)
    spec = chosen if cuda else tiny_twin(chosen)
    plan = planned(args, chosen)  # what the real model cannot make is refused before building
    if spec is not chosen:
        plan = planned(args, spec)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory() as data_dir:
        settings = settings_for(args, Path(data_dir), device)
        encoder = text_encoder_for(args.text_encoder, device) if cuda else "tiny"
        build_start = time.perf_counter()
        engine, facts = random_runner(spec, settings, device, tiny=not cuda, text_encoder=encoder)
        build_s = time.perf_counter() - build_start
        warm_start = time.perf_counter()
        timed_clip(engine, plan, device)  # the warm-up is the same clip: compile, autotune, caches
        warmup_s = time.perf_counter() - warm_start
        stages = timed_clip(engine, plan, device)
        applied = dict(engine.features)
    total_s = stages["generate"] + stages["mp4_encode"]
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    print(
        json.dumps(
            {
                "benchmark": "gpu_pipeline",
                "mode": mode,
                "device": torch.cuda.get_device_name(device) if cuda else "cpu",
                "preset": "quality" if chosen.id.endswith(":quality") else "fast",
                "model": spec.id,
                "stands_for": chosen.id,
                "clip": {
                    "duration_s": args.duration,
                    "output": [plan.output_width, plan.output_height],
                    "generated": [plan.width, plan.height, plan.num_frames],
                    "stages": [[s.width, s.height, s.num_inference_steps] for s in plan.stages],
                },
                "features": {
                    **applied,
                    "text_encoder": facts.get("text_encoder", "tiny"),
                },
                "build_s": round(build_s, 2),
                "warmup_s": round(warmup_s, 2),
                "stages_s": {name: round(value, 4) for name, value in stages.items()},
                "total_s": round(total_s, 3),
                "peak_gpu_memory_gib": round(peak, 2) if peak is not None else None,
                "ratio_vs_hosted_150s": round(total_s / HOSTED_SECONDS, 4),
                "ratio_vs_target_15s": round(total_s / TARGET_SECONDS, 4),
                "components": facts,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
