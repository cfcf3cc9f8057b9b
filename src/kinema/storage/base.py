"""The artifact store interface every backend implements."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class ArtifactStore(Protocol):
    def staging_path(self, suffix: str) -> Path:
        """A fresh local path to write an artifact into before `put`."""
        ...

    def put(self, key: str, source: Path) -> int:
        """Store `source` under `key` atomically (consuming it); returns the stored size."""
        ...

    def delete(self, key: str) -> None: ...

    def url(self, key: str, base_url: str, ttl_seconds: int) -> str:
        """An absolute URL that downloads the artifact without credentials, until it expires."""
        ...
