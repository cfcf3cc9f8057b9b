"""Every model family kinema serves: one module each, registered here."""

from __future__ import annotations

from kinema.catalog.families import kandinsky, ltx2, wan
from kinema.catalog.spec import ModelSpec

FAMILY_MODELS: tuple[ModelSpec, ...] = (*ltx2.MODELS, *wan.MODELS, *kandinsky.MODELS)
