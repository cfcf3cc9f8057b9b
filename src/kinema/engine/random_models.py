"""Any catalog model with random weights, for the GPU benchmark: at its real size on a GPU (built
from the configs under `configs/`, nothing downloaded), or as its family's tiny twin on a CPU.
Random weights make noise, but noise costs what a real clip costs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kinema.catalog.registry import MODELS, ModelSpec
from kinema.config import Settings

CONFIGS = Path(__file__).parent / "configs"
LTX2_CONFIGS = {
    "ltx-2": CONFIGS / "ltx2",
    "ltx-2.3": CONFIGS / "ltx-2.3",
    "ltx-2.5": CONFIGS / "ltx-2.5",
}
REAL_DTYPE = torch.bfloat16

Built = tuple[Any, dict[str, object]]  # a ClipRunner, and facts about its components


def tiny_twin(spec: ModelSpec) -> ModelSpec:
    """The tiny model the catalog names to stand in for `spec` on a CPU (a tiny one: itself)."""
    if not spec.weights:
        return spec
    if spec.tiny_twin not in MODELS:
        raise ValueError(f"{spec.id} names no tiny twin")
    return MODELS[spec.tiny_twin]


def random_runner(
    spec: ModelSpec,
    settings: Settings,
    device: torch.device,
    *,
    tiny: bool,
    text_encoder: str = "real",
) -> Built:
    """`spec` (a real-size catalog model, built with random weights on `device`; with `tiny`, a
    tiny twin, built and loaded as a worker loads it) ready to run plans, and its facts.
    `text_encoder="small"`: LTX's Gemma text encoder with 2 layers, for GPUs where the whole
    one does not fit beside the transformer."""
    if tiny:
        return _tiny(spec, settings)
    builders: dict[str, Callable[..., Built]] = {
        "ltx2": _ltx2,
        "wan": _wan,
        "kandinsky": _kandinsky,
    }
    return builders[spec.family](spec, settings, device, text_encoder=text_encoder)


def _tiny(spec: ModelSpec, settings: Settings) -> Built:
    from kinema.engine.families import load_model
    from kinema.engine.random_init import component_facts

    started = time.perf_counter()
    runner = load_model(spec, settings)
    seconds = {"total": round(time.perf_counter() - started, 3)}
    models = {
        name: module
        for name, module in runner.pipeline.components.items()
        if isinstance(module, torch.nn.Module)
    }
    if getattr(runner, "upsampler", None) is not None:
        models["latent_upsampler"] = runner.upsampler
    dtype = next(models["transformer"].parameters()).dtype
    return runner, component_facts(models, "tiny", runner.device, dtype, seconds)


def _ltx2(spec: ModelSpec, settings: Settings, device: torch.device, *, text_encoder: str) -> Built:
    from kinema.engine.pipelines import engine_from_components
    from kinema.engine.random_init import build_random_ltx2

    configs = LTX2_CONFIGS[spec.id.split(":")[0]]
    pipeline, upsampler, facts = build_random_ltx2(
        configs, device, REAL_DTYPE, text_encoder=text_encoder
    )
    return engine_from_components(spec, pipeline, upsampler, settings, device), facts


def _wan(spec: ModelSpec, settings: Settings, device: torch.device, *, text_encoder: str) -> Built:
    from kinema.engine import wan

    pipeline, facts = wan.random_real_pipeline(spec.id, device, REAL_DTYPE)
    pipeline.set_progress_bar_config(disable=True)
    return wan.WanRunner(spec, pipeline, device), facts


def _kandinsky(
    spec: ModelSpec, settings: Settings, device: torch.device, *, text_encoder: str
) -> Built:
    from kinema.engine import kandinsky

    pipeline, facts = kandinsky.random_real_pipeline(spec.id, device, REAL_DTYPE)
    pipeline.set_progress_bar_config(disable=True)
    return kandinsky.KandinskyRunner(spec, pipeline, device), facts
