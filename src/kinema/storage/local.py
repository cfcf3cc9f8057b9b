"""Artifacts in a local directory, served by the API under HMAC-signed, expiring URLs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlencode

from kinema.errors import Forbidden, NotFound

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}(/[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}){0,3}$")
FILES_ROUTE = "/files"


def load_or_create_secret(path: Path) -> bytes:
    """The deployment's signing secret, created once (0600) and shared by every process."""
    path.parent.mkdir(parents=True, exist_ok=True)
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


class LocalArtifactStore:
    def __init__(self, root: Path, secret: bytes) -> None:
        self.root = root.resolve()
        self._secret = secret
        self._staging = self.root / ".staging"
        self._staging.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        """The file behind `key`; keys that could leave the store are refused."""
        if not KEY_PATTERN.fullmatch(key):
            raise NotFound(f"no artifact {key!r}")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path.is_relative_to(self._staging):
            raise NotFound(f"no artifact {key!r}")
        return path

    def staging_path(self, suffix: str) -> Path:
        return self._staging / f"{uuid.uuid4().hex}{suffix}"

    def put(self, key: str, source: Path) -> int:
        target = self.path_for(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(source, target)
        return target.stat().st_size

    def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)

    def url(self, key: str, base_url: str, ttl_seconds: int) -> str:
        expires = int(time.time()) + ttl_seconds
        query = urlencode({"expires": expires, "signature": _signature(self._secret, key, expires)})
        return f"{base_url.rstrip('/')}{FILES_ROUTE}/{quote(key)}?{query}"

    def verify(self, key: str, expires: int, signature: str) -> Path:
        """The artifact's path if the signature is genuine and current; Forbidden otherwise."""
        expected = _signature(self._secret, key, expires)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise Forbidden("invalid download signature")
        if expires < time.time():
            raise Forbidden("this download link has expired")
        path = self.path_for(key)
        if not path.is_file():
            raise NotFound(f"no artifact {key!r}")
        return path

    def sweep_staging(self, older_than_seconds: float = 3600.0) -> int:
        """Remove staging files left behind by workers that died mid-encode."""
        cutoff = time.time() - older_than_seconds
        stale = [p for p in self._staging.iterdir() if p.stat().st_mtime < cutoff]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)
