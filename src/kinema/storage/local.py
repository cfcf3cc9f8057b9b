"""Artifacts in a local directory, served by the API under HMAC-signed, expiring URLs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

from kinema.errors import Forbidden, NotFound
from kinema.private_files import PRIVATE_FILE_MODE, make_private_dirs
from kinema.storage.base import (
    CHUNK_BYTES,
    KEY_PATTERN,
    check_key,
    staging_name,
    sweep_directory,
)

__all__ = ["FILES_ROUTE", "KEY_PATTERN", "LocalArtifactStore", "load_or_create_secret"]

FILES_ROUTE = "/files"


def load_or_create_secret(path: Path) -> bytes:
    """The deployment's signing secret, created once (0600) and shared by every process."""
    make_private_dirs(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        secret = secrets.token_bytes(32)
        handle.write(secret)
    return secret


def _signature(secret: bytes, key: str, expires: int) -> str:
    digest = hmac.new(secret, f"{key}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _chunks_of(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


class LocalArtifactStore:
    def __init__(self, root: Path, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        self.root = root.resolve()
        self._secret = secret
        self._clock = clock
        self._staging = self.root / ".staging"
        make_private_dirs(self._staging)

    def path_for(self, key: str) -> Path:
        """The file behind `key`; keys that could leave the store are refused."""
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root) or path.is_relative_to(self._staging):
            raise NotFound(f"no artifact {key!r}")
        return path

    def staging_path(self, suffix: str) -> Path:
        return self._staging / staging_name(suffix)

    def put(self, key: str, source: Path) -> int:
        target = self.path_for(key)
        make_private_dirs(target.parent)
        with source.open("rb") as handle:
            os.fchmod(handle.fileno(), PRIVATE_FILE_MODE)
            os.fsync(handle.fileno())
        os.replace(source, target)
        return target.stat().st_size

    def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def keys(self, prefix: str = "") -> list[str]:
        """Every file in the store but the staging area (valid key or not: this is an audit)."""
        found = (
            path.relative_to(self.root).as_posix()
            for path in self.root.rglob("*")
            if path.is_file() and not path.is_relative_to(self._staging)
        )
        return sorted(key for key in found if key.startswith(prefix))

    def download_to(self, key: str, destination: Path) -> None:
        """Copy through a temporary sibling of `destination`, so a failed copy leaves no stub."""
        source = self.path_for(key)
        if not source.is_file():
            raise NotFound(f"no artifact {key!r}")
        partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.part")
        try:
            shutil.copyfile(source, partial)
            os.replace(partial, destination)
        finally:
            partial.unlink(missing_ok=True)

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        path = self.path_for(key)
        if not path.is_file():
            raise NotFound(f"no artifact {key!r}")
        return _chunks_of(path)

    def url(self, key: str, base_url: str, ttl_seconds: int) -> str:
        expires = int(self._clock()) + ttl_seconds
        query = urlencode({"expires": expires, "signature": _signature(self._secret, key, expires)})
        return f"{base_url.rstrip('/')}{FILES_ROUTE}/{quote(key)}?{query}"

    def verify(self, key: str, expires: int, signature: str) -> Path:
        """The artifact's path if the signature is genuine and current; Forbidden otherwise."""
        expected = _signature(self._secret, key, expires)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise Forbidden("invalid download signature")
        if expires < self._clock():
            raise Forbidden("this download link has expired")
        path = self.path_for(key)
        if not path.is_file():
            raise NotFound(f"no artifact {key!r}")
        return path

    def sweep_staging(self, older_than_seconds: float = 3600.0) -> int:
        """Remove staging files left behind by workers that died mid-encode."""
        return sweep_directory(self._staging, older_than_seconds)
