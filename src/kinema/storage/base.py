"""The artifact store interface every backend implements, and what the backends share."""

from __future__ import annotations

import mimetypes
import os
import re
import time
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Protocol

from kinema.errors import NotFound

# A job's artifacts live under `<job id>/…`: at most four segments, no dot-leading segment
# (so no `..`, no `.staging`), no empty segment, no leading slash.
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}(/[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}){0,3}$")


def check_key(key: str) -> str:
    """`key` itself if it is a valid artifact key; NotFound otherwise (as for a missing one)."""
    if not KEY_PATTERN.fullmatch(key):
        raise NotFound(f"no artifact {key!r}")
    return key


CHUNK_BYTES = 1 << 20


def content_type(key: str) -> str:
    """The media type an artifact is served with, from its key's suffix."""
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def staging_name(suffix: str) -> str:
    """A fresh staging file name that records which process writes it."""
    return f"{os.getpid()}-{uuid.uuid4().hex}{suffix}"


def _writer_gone(path: Path) -> bool:
    """Whether the process that named this staging file is dead (staging dirs are host-local)."""
    pid = path.name.partition("-")[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def sweep_directory(directory: Path, older_than_seconds: float) -> int:
    """Remove the files in `directory` whose writer died, or older than `older_than_seconds`."""
    cutoff = time.time() - older_than_seconds
    stale = [
        path
        for path in directory.iterdir()
        if path.is_file() and (_writer_gone(path) or path.stat().st_mtime < cutoff)
    ]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def remove_job_artifacts(store: ArtifactStore, job_id: str, keep: Collection[str] = ()) -> None:
    """Delete every file stored under a job (`<job id>/…`) but those in `keep`."""
    for key in store.keys(f"{job_id}/"):
        if key not in keep:
            store.delete(key)


class ArtifactStore(Protocol):
    """Every method taking a key refuses invalid keys (see KEY_PATTERN) with NotFound."""

    def staging_path(self, suffix: str) -> Path:
        """A fresh local path to write an artifact into before `put`."""
        ...

    def put(self, key: str, source: Path) -> int:
        """Store `source` under `key` atomically (consuming it); returns the stored size."""
        ...

    def delete(self, key: str) -> None:
        """Remove the artifact; deleting a missing one is not an error."""
        ...

    def exists(self, key: str) -> bool: ...

    def keys(self, prefix: str = "") -> list[str]:
        """Every stored key starting with `prefix`, sorted (an audit: no orphans, one per job)."""
        ...

    def download_to(self, key: str, destination: Path) -> None:
        """Copy the artifact to the local file `destination`; NotFound if there is none."""
        ...

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        """The artifact's bytes in chunks; NotFound (before the first chunk) if there is none."""
        ...

    def url(self, key: str, base_url: str, ttl_seconds: int) -> str:
        """An absolute URL that downloads the artifact without credentials, until it expires."""
        ...

    def sweep_staging(self, older_than_seconds: float = 3600.0) -> int:
        """Remove staging files left behind by workers that died mid-encode; returns how many."""
        ...
