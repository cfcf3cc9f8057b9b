"""Artifacts in an S3 bucket (or any S3-compatible store), served by presigned GET URLs.

boto3 is imported only inside the methods that need it, so local-only installs work without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kinema.errors import NotFound
from kinema.private_files import make_private_dirs
from kinema.storage.base import CHUNK_BYTES, check_key, content_type, staging_name, sweep_directory

MULTIPART_THRESHOLD = 8 * 1024 * 1024  # files above this go up in parts of this size
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 presigned URLs live at most a week
_MISSING = {"404", "NoSuchKey", "NotFound"}


def _transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD,
        multipart_chunksize=MULTIPART_THRESHOLD,
        max_concurrency=4,
    )


def _is_missing(error: Exception) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(error, ClientError) and error.response["Error"]["Code"] in _MISSING


def normalize_prefix(prefix: str) -> str:
    """`a/b`, `/a/b/` → `a/b/`; empty stays empty (the whole bucket)."""
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""


class S3ArtifactStore:
    """Keys map to objects `<prefix><key>`; encodes are staged in a local directory first."""

    def __init__(self, bucket: str, prefix: str, client: Any, staging_dir: Path) -> None:
        self.bucket = bucket
        self.prefix = normalize_prefix(prefix)
        self.client = client
        self._staging = staging_dir
        make_private_dirs(self._staging)

    def _object(self, key: str) -> str:
        return self.prefix + check_key(key)

    def staging_path(self, suffix: str) -> Path:
        return self._staging / staging_name(suffix)

    def put(self, key: str, source: Path) -> int:
        """Upload (multipart above MULTIPART_THRESHOLD), then remove `source`.

        The object appears whole or not at all; a failed upload leaves `source` in place.
        """
        name = self._object(key)
        size = source.stat().st_size
        self.client.upload_file(
            str(source),
            self.bucket,
            name,
            ExtraArgs={"ContentType": content_type(key)},
            Config=_transfer_config(),
        )
        source.unlink(missing_ok=True)
        return size

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._object(key))

    def exists(self, key: str) -> bool:
        name = self._object(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=name)
        except Exception as error:
            if _is_missing(error):
                return False
            raise
        return True

    def keys(self, prefix: str = "") -> list[str]:
        """Every object under the store's prefix starting with `prefix`, prefix-relative."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        found = [item["Key"] for page in pages for item in page.get("Contents", [])]
        return sorted(name[len(self.prefix) :] for name in found)

    def download_to(self, key: str, destination: Path) -> None:
        name = self._object(key)
        try:
            self.client.download_file(
                self.bucket, name, str(destination), Config=_transfer_config()
            )
        except Exception as error:
            if _is_missing(error):
                raise NotFound(f"no artifact {key!r}") from error
            raise

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._object(key))["Body"]
        except Exception as error:
            if _is_missing(error):
                raise NotFound(f"no artifact {key!r}") from error
            raise
        return body.iter_chunks(CHUNK_BYTES)

    def url(self, key: str, base_url: str, ttl_seconds: int) -> str:
        """A presigned GET URL; `base_url` is unused (the bucket's endpoint serves it).

        The TTL is capped at the SigV4 maximum of a week. With temporary credentials (an
        instance role, STS) the URL also dies when those credentials expire.
        """
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._object(key)},
                ExpiresIn=max(1, min(ttl_seconds, MAX_PRESIGN_SECONDS)),
            )
        )

    def sweep_staging(self, older_than_seconds: float = 3600.0) -> int:
        return sweep_directory(self._staging, older_than_seconds)
