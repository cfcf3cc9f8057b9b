"""Which engine loads each model family: one module per family, registered here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kinema.catalog.registry import ModelSpec
from kinema.config import Settings


def _ltx2(spec: ModelSpec, settings: Settings) -> Any:
    from kinema.engine.pipelines import load_engine

    return load_engine(spec, settings)


def _wan(spec: ModelSpec, settings: Settings) -> Any:
    from kinema.engine.wan import load_wan_engine

    return load_wan_engine(spec, settings)


def _kandinsky(spec: ModelSpec, settings: Settings) -> Any:
    from kinema.engine.kandinsky import load_kandinsky_engine

    return load_kandinsky_engine(spec, settings)


LOADERS: dict[str, Callable[[ModelSpec, Settings], Any]] = {
    "ltx2": _ltx2,
    "wan": _wan,
    "kandinsky": _kandinsky,
}


def load_model(spec: ModelSpec, settings: Settings) -> Any:
    """`spec` loaded by its family's engine, ready to run plans."""
    return LOADERS[spec.family](spec, settings)
