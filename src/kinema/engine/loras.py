"""The LoRAs requests ask for, as adapters of one loaded pipeline: each loaded once, the most
recently used kept, activated per job at its scales over the model's own weights, which never
change (adapters are added beside them, not fused), so a job without them runs the base model."""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kinema.catalog.loras import offered
from kinema.catalog.registry import ModelSpec
from kinema.domain import LoraChoice
from kinema.errors import ModelUnavailable

logger = logging.getLogger("kinema.engine")

ADAPTER_PREFIX = "request-"


class RequestLoras:
    def __init__(self, pipeline: Any, spec: ModelSpec, lora_dir: Path | None, keep: int) -> None:
        self._pipeline = pipeline
        self._spec = spec
        self._lora_dir = lora_dir
        self._keep = keep
        self._loaded: OrderedDict[str, str] = OrderedDict()  # LoRA name → adapter name

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)

    def adapters(self, choices: Sequence[LoraChoice]) -> list[tuple[str, float]]:
        """(adapter, scale) for each choice, loading those not loaded yet, and unloading the
        least recently used beyond what is kept."""
        for choice in choices:
            if choice.name in self._loaded:
                self._loaded.move_to_end(choice.name)
            else:
                self._loaded[choice.name] = self._load(choice.name)
        self._evict(keep={choice.name for choice in choices})
        return [(self._loaded[choice.name], choice.scale) for choice in choices]

    def _load(self, name: str) -> str:
        from safetensors.torch import load_file

        path = offered(self._lora_dir, self._spec.loras_folder).get(name)
        if path is None:
            raise ModelUnavailable(
                f"LoRA {name!r} is not in {self._lora_dir}/{self._spec.loras_folder} on this "
                "worker (every worker needs the files the API offers)"
            )
        adapter = f"{ADAPTER_PREFIX}{name}"
        try:
            with warnings.catch_warnings():  # peft notes each adapter after the first one
                warnings.filterwarnings("ignore", "Already found a `peft_config`")
                self._pipeline.load_lora_weights(load_file(str(path)), adapter_name=adapter)
        except Exception as exc:
            raise ModelUnavailable(
                f"LoRA {name!r} ({path.name}) does not fit {self._spec.id}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        logger.info("loaded LoRA %s for %s", name, self._spec.id)
        return adapter

    def _evict(self, keep: set[str]) -> None:
        while len(self._loaded) > self._keep:
            oldest = next((name for name in self._loaded if name not in keep), None)
            if oldest is None:
                return
            self._pipeline.delete_adapters([self._loaded.pop(oldest)])
            logger.info("unloaded LoRA %s (the least recently used)", oldest)


def activate(pipeline: Any, adapters: Sequence[tuple[str, float]], any_loaded: bool) -> None:
    """Exactly `adapters` active at their scales; none: the model's own weights alone."""
    if adapters:
        pipeline.enable_lora()
        pipeline.set_adapters([name for name, _ in adapters], [scale for _, scale in adapters])
    elif any_loaded:
        pipeline.disable_lora()
