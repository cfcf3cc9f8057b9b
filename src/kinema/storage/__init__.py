"""Artifacts: the `ArtifactStore` interface and its local-directory implementation."""

from kinema.storage.base import ArtifactStore
from kinema.storage.local import LocalArtifactStore, load_or_create_secret

__all__ = ["ArtifactStore", "LocalArtifactStore", "load_or_create_secret"]
