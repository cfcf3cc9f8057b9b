"""Any catalog model with random weights, for the GPU benchmark: at its real size on a GPU (built
from the configs under `configs/`, nothing downloaded), or as its family's tiny twin on a CPU.
Random weights make noise, but noise costs what a real clip costs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kinema.catalog.registry import MODELS, ModelSpec
from kinema.config import Settings

CONFIGS = Path(__file__).parent / "configs"
LTX2_CONFIGS = {"ltx-2": CONFIGS / "ltx2", "ltx-2.3": CONFIGS / "ltx-2.3"}
REAL_DTYPE = torch.bfloat16
TINY_DTYPE = torch.float32

Built = tuple[Any, dict[str, object]]  # a ClipRunner, and facts about its components


def tiny_twin(spec: ModelSpec) -> ModelSpec:
    """The tiny model of `spec`'s family with the same kind of preset (`:quality` or not)."""
    quality = spec.id.endswith(":quality")
    for candidate in MODELS.values():
        if (
            candidate.family == spec.family
            and not candidate.weights
            and candidate.id.endswith(":quality") == quality
        ):
            return candidate
    raise ValueError(f"the {spec.family} family has no tiny twin")


def random_runner(
    spec: ModelSpec,
    settings: Settings,
    device: torch.device,
    *,
    tiny: bool,
    text_encoder: str = "real",
) -> Built:
    """`spec` (a real-size catalog model; with `tiny`, its tiny twin) ready to run plans.
    `text_encoder="small"` gives LTX-2's Gemma 2 layers, for GPUs it would not fit beside."""
    builders: dict[str, Callable[..., Built]] = {
        "ltx2": _ltx2,
        "wan": _wan,
        "kandinsky": _kandinsky,
    }
    return builders[spec.family](spec, settings, device, tiny=tiny, text_encoder=text_encoder)


def _ltx2(
    spec: ModelSpec, settings: Settings, device: torch.device, *, tiny: bool, text_encoder: str
) -> Built:
    from kinema.engine.pipelines import engine_from_components
    from kinema.engine.random_init import build_random_ltx2, build_random_ltx2_from_tiny

    if tiny:
        pipeline, upsampler, facts = build_random_ltx2_from_tiny(device, TINY_DTYPE)
    else:
        configs = LTX2_CONFIGS[spec.id.split(":")[0]]
        pipeline, upsampler, facts = build_random_ltx2(
            configs, device, REAL_DTYPE, text_encoder=text_encoder
        )
    return engine_from_components(spec, pipeline, upsampler, settings, device), facts


def _wan(
    spec: ModelSpec, settings: Settings, device: torch.device, *, tiny: bool, text_encoder: str
) -> Built:
    from kinema.engine import wan

    if tiny:
        pipeline, facts = _on(device, wan._tiny_wan_pipeline())
    else:
        pipeline, facts = wan.random_real_pipeline(spec.id, device, REAL_DTYPE)
    pipeline.set_progress_bar_config(disable=True)
    return wan.WanRunner(spec, pipeline, device), facts


def _kandinsky(
    spec: ModelSpec, settings: Settings, device: torch.device, *, tiny: bool, text_encoder: str
) -> Built:
    from kinema.engine import kandinsky

    if tiny:
        pipeline, facts = _on(device, kandinsky._tiny_pipeline())
    else:
        pipeline, facts = kandinsky.random_real_pipeline(spec.id, device, REAL_DTYPE)
    pipeline.set_progress_bar_config(disable=True)
    return kandinsky.KandinskyRunner(spec, pipeline, device), facts


def _on(device: torch.device, pipeline: Any) -> Built:
    """A tiny pipeline (random weights as built) on `device` in fp32, with its facts."""
    from kinema.engine.random_init import component_facts

    models = {
        name: module
        for name, module in pipeline.components.items()
        if isinstance(module, torch.nn.Module)
    }
    for module in models.values():
        # nn.Module's own `to`: diffusers' override only warns about modules kept in fp32.
        torch.nn.Module.to(module, device=device, dtype=TINY_DTYPE).eval().requires_grad_(False)
    return pipeline, component_facts(models, "tiny", device, TINY_DTYPE, {})
