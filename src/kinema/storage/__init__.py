"""Artifacts: the `ArtifactStore` interface, its local-directory and S3 implementations."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from kinema.storage.base import KEY_PATTERN, ArtifactStore
from kinema.storage.local import LocalArtifactStore, load_or_create_secret
from kinema.storage.s3 import S3ArtifactStore

__all__ = [
    "KEY_PATTERN",
    "ArtifactStore",
    "LocalArtifactStore",
    "S3ArtifactStore",
    "load_or_create_secret",
    "open_artifact_store",
]


def open_artifact_store(
    url: str, *, local_root: Path, secret: bytes, staging_dir: Path
) -> ArtifactStore:
    """The store KINEMA_STORAGE names.

    - `""` or `local`: a LocalArtifactStore in `local_root`;
    - `file:///some/dir`: a LocalArtifactStore in that directory;
    - `s3://bucket[/prefix]`: an S3ArtifactStore, its client configured the usual AWS way
      (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3 or
      AWS_ENDPOINT_URL for S3-compatible stores, AWS_PROFILE, ~/.aws/config).

    `secret` signs local URLs only; `staging_dir` holds S3 encodes before upload (a local store
    stages inside its own root, so that `put` is a rename on one filesystem).
    """
    text = url.strip()
    if text in ("", "local"):
        return LocalArtifactStore(local_root, secret)
    parts = urlsplit(text)
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path:
        return LocalArtifactStore(Path(url2pathname(parts.path)), secret)
    if parts.scheme == "s3" and parts.netloc:
        return S3ArtifactStore(parts.netloc, parts.path, _s3_client(), staging_dir)
    raise ValueError(
        f"KINEMA_STORAGE={url!r} is not a storage URL: use 'local', 'file:///a/directory' "
        "or 's3://bucket/optional/prefix'"
    )


def _s3_client() -> object:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError("KINEMA_STORAGE=s3://… needs boto3: pip install boto3") from error
    config = Config(signature_version="s3v4", retries={"mode": "standard", "max_attempts": 5})
    return boto3.session.Session().client("s3", config=config)
