"""The LoRAs a deployment offers: files under KINEMA_LORA_DIR/<the model's LoRA folder>/, named
by their file name. Torch-free: the API checks a request's LoRAs before it queues the job, the
worker finds their files the same way."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from kinema.catalog.spec import ModelSpec
from kinema.domain import LoraChoice
from kinema.errors import FieldError

MAX_LORAS = 4
MIN_SCALE, MAX_SCALE = -2.0, 2.0
LORA_SUFFIX = ".safetensors"


def offered(lora_dir: Path | None, folder: str) -> dict[str, Path]:
    """Name → file of every LoRA in `lora_dir/folder`, sorted by name."""
    if lora_dir is None:
        return {}
    files = sorted((lora_dir / folder).glob(f"*{LORA_SUFFIX}"))
    return {path.name.removesuffix(LORA_SUFFIX): path for path in files if path.is_file()}


def every_offered(lora_dir: Path | None) -> dict[str, dict[str, Path]]:
    """Each LoRA folder of `lora_dir` and what it offers (`kinema loras`)."""
    if lora_dir is None or not lora_dir.is_dir():
        return {}
    folders = sorted(path.name for path in lora_dir.iterdir() if path.is_dir())
    return {folder: files for folder in folders if (files := offered(lora_dir, folder))}


def lora_error(
    choices: Iterable[LoraChoice], spec: ModelSpec, lora_dir: Path | None
) -> FieldError | None:
    """Why `spec` cannot run these LoRAs here (None: it can), naming what would work."""
    choices = list(choices)
    if not choices:
        return None
    if len(choices) > MAX_LORAS:
        return FieldError("loras", f"at most {MAX_LORAS} LoRAs a request; got {len(choices)}")
    names = [choice.name for choice in choices]
    if len(set(names)) < len(names):
        return FieldError("loras", "each LoRA may be named once")
    for choice in choices:
        if not MIN_SCALE <= choice.scale <= MAX_SCALE:
            return FieldError(
                "loras",
                f"{choice.name}: scale {choice.scale:g} is not in {MIN_SCALE:g}..{MAX_SCALE:g}",
            )
    available = offered(lora_dir, spec.loras_folder)
    for name in names:
        if name not in available:
            return FieldError("loras", _missing(name, spec, lora_dir, available))
    return None


def _missing(name: str, spec: ModelSpec, lora_dir: Path | None, available: dict[str, Path]) -> str:
    if lora_dir is None:
        return f"{name}: this deployment offers no LoRAs (KINEMA_LORA_DIR is not set)"
    elsewhere = [folder for folder, files in every_offered(lora_dir).items() if name in files]
    if elsewhere:
        return (
            f"{name} is a LoRA of {', '.join(elsewhere)}, not of {spec.id} "
            f"(its LoRAs: {', '.join(available) or 'none'})"
        )
    return f"no LoRA named {name!r} for {spec.id}; offered: {', '.join(available) or 'none'}"
