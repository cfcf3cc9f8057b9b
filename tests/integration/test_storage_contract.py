"""One contract for every ArtifactStore: the local directory and S3 (a moto server on loopback).

Each backend is a subclass of `ArtifactStoreContract` that provides three fixtures: `store`,
`http_get` (fetches a URL with no credentials at all) and `base_url` (what the API would pass).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from kinema.config import Settings
from kinema.errors import NotFound
from kinema.server import create_app
from kinema.storage import (
    ArtifactStore,
    LocalArtifactStore,
    S3ArtifactStore,
    load_or_create_secret,
    open_artifact_store,
)
from kinema.storage.s3 import MAX_PRESIGN_SECONDS, MULTIPART_THRESHOLD
from tests.s3server import create_bucket, fake_aws_env, moto_s3_server, s3_client

PAYLOAD = bytes(range(256)) * 40
LARGE_SIZE = 20 * 1024 * 1024  # 3 parts of MULTIPART_THRESHOLD on S3
BAD_KEYS = ["../x", "/etc/passwd", "job/../../x", "a//b", "", ".staging/x.mp4", "a/./b", "a/"]

HttpGet = Callable[..., httpx.Response]


def put_bytes(store: ArtifactStore, key: str, data: bytes = PAYLOAD) -> Path:
    staging = store.staging_path(".mp4")
    staging.write_bytes(data)
    assert store.put(key, staging) == len(data)
    return staging


class ArtifactStoreContract:
    def after_large_put(self, store: Any, key: str) -> None:
        """A backend's own checks of how a large file was stored (S3: multipart)."""

    def test_round_trip_put_exists_keys_download_delete(
        self, store: ArtifactStore, tmp_path: Path
    ) -> None:
        key = "job1/lease1.mp4"
        assert not store.exists(key)
        staging = put_bytes(store, key)
        assert not staging.exists(), "put consumes the staging file"
        assert store.exists(key)
        assert store.keys() == [key]
        store.download_to(key, tmp_path / "out.mp4")
        assert (tmp_path / "out.mp4").read_bytes() == PAYLOAD
        store.delete(key)
        assert not store.exists(key)
        assert store.keys() == []
        store.delete(key)  # deleting a missing artifact is not an error
        with pytest.raises(NotFound):
            store.download_to(key, tmp_path / "gone.mp4")
        assert not (tmp_path / "gone.mp4").exists()

    def test_put_replaces_an_existing_artifact(self, store: ArtifactStore, tmp_path: Path) -> None:
        put_bytes(store, "job1/a.mp4", b"first")
        put_bytes(store, "job1/a.mp4", PAYLOAD)
        store.download_to("job1/a.mp4", tmp_path / "out.mp4")
        assert (tmp_path / "out.mp4").read_bytes() == PAYLOAD
        assert store.keys() == ["job1/a.mp4"]

    def test_keys_lists_exactly_what_was_put(self, store: ArtifactStore) -> None:
        stored = ["job1/a.mp4", "job1/b.mp4", "job10/c.mp4", "job2/a.mp4", "solo"]
        for key in stored:
            put_bytes(store, key, key.encode())
        store.staging_path(".mp4").write_bytes(b"an encode in progress is not an artifact")
        assert store.keys() == stored
        assert store.keys("job1/") == ["job1/a.mp4", "job1/b.mp4"]
        assert store.keys("job1") == ["job1/a.mp4", "job1/b.mp4", "job10/c.mp4"]
        assert store.keys("nothing") == []

    def test_a_large_file_round_trips_byte_identical(
        self, store: ArtifactStore, tmp_path: Path
    ) -> None:
        data = os.urandom(LARGE_SIZE)
        staging = put_bytes(store, "job1/large.mp4", data)
        assert not staging.exists()
        self.after_large_put(store, "job1/large.mp4")
        store.download_to("job1/large.mp4", tmp_path / "large.mp4")
        back = (tmp_path / "large.mp4").read_bytes()
        assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()

    def test_iter_bytes_streams_the_artifact_and_refuses_missing_ones(
        self, store: ArtifactStore
    ) -> None:
        data = os.urandom(3 * 1024 * 1024 + 17)
        put_bytes(store, "job1/a.mp4", data)
        chunks = list(store.iter_bytes("job1/a.mp4"))
        assert len(chunks) > 1, "streamed in chunks, not read whole"
        assert b"".join(chunks) == data
        with pytest.raises(NotFound):
            store.iter_bytes("job1/missing.mp4")

    def test_a_thumbnail_is_served_as_a_jpeg(
        self, store: ArtifactStore, http_get: HttpGet, base_url: str
    ) -> None:
        put_bytes(store, "job1/a.jpg", b"\xff\xd8\xff not really a jpeg")
        response = http_get(store.url("job1/a.jpg", base_url, ttl_seconds=60))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"

    def test_url_downloads_without_credentials_whole_and_in_ranges(
        self, store: ArtifactStore, http_get: HttpGet, base_url: str
    ) -> None:
        put_bytes(store, "job1/a.mp4")
        url = store.url("job1/a.mp4", base_url, ttl_seconds=60)
        whole = http_get(url)
        assert whole.status_code == 200, whole.text
        assert whole.content == PAYLOAD
        assert whole.headers["content-type"] == "video/mp4"
        part = http_get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206
        assert part.content == PAYLOAD[100:200]

    def test_url_stops_working_once_expired(
        self, store: ArtifactStore, http_get: HttpGet, base_url: str
    ) -> None:
        put_bytes(store, "job1/a.mp4")
        url = store.url("job1/a.mp4", base_url, ttl_seconds=1)
        time.sleep(2.1)
        assert http_get(url).status_code == 403

    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_bad_keys_are_refused(self, store: ArtifactStore, tmp_path: Path, key: str) -> None:
        staging = store.staging_path(".mp4")
        staging.write_bytes(PAYLOAD)
        with pytest.raises(NotFound):
            store.put(key, staging)
        assert staging.exists(), "a refused put leaves the staging file to its owner"
        for refused in (store.exists, store.delete):
            with pytest.raises(NotFound):
                refused(key)
        with pytest.raises(NotFound):
            store.download_to(key, tmp_path / "out.mp4")
        assert store.keys() == []

    def test_staging_paths_are_fresh_and_swept_when_stale(self, store: ArtifactStore) -> None:
        first, second = store.staging_path(".mp4"), store.staging_path(".mp4")
        assert first != second and first.suffix == ".mp4"
        first.write_bytes(b"stale")
        second.write_bytes(b"fresh")
        hour_ago = time.time() - 3600
        os.utime(first, (hour_ago, hour_ago))
        assert store.sweep_staging(older_than_seconds=60) == 1
        assert not first.exists() and second.exists()


class TestLocalArtifactStore(ArtifactStoreContract):
    @pytest.fixture
    def app_client(self, tmp_path: Path) -> TestClient:
        return TestClient(create_app(Settings(data_dir=tmp_path / "data", model="tiny-ltx2")))

    @pytest.fixture
    def store(self, app_client: TestClient) -> LocalArtifactStore:
        """A store opened by the factory on the app's directory and secret: the app serves it."""
        settings = app_client.app.state.services.settings  # type: ignore[attr-defined]
        store = open_artifact_store(
            "local",
            local_root=settings.artifacts_dir,
            secret=load_or_create_secret(settings.secret_path),
            staging_dir=settings.data_dir / "unused-staging",
        )
        assert isinstance(store, LocalArtifactStore)
        return store

    @pytest.fixture
    def http_get(self, app_client: TestClient) -> HttpGet:
        return app_client.get

    @pytest.fixture
    def base_url(self) -> str:
        return "http://testserver"

    def test_keys_audits_stray_files_too(self, store: LocalArtifactStore) -> None:
        (store.root / "job1").mkdir()
        (store.root / "job1" / "stray file.tmp").write_bytes(b"not a valid key")
        assert store.keys() == ["job1/stray file.tmp"]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, tmp_path: Path) -> str:
    fake_aws_env(monkeypatch, moto_endpoint, tmp_path)
    return moto_endpoint


class TestS3ArtifactStore(ArtifactStoreContract):
    @pytest.fixture
    def store(self, aws_env: str, tmp_path: Path) -> S3ArtifactStore:
        """A store opened by the factory, its endpoint and credentials from the environment."""
        store = open_artifact_store(
            f"s3://{create_bucket(aws_env)}/kinema/artifacts",
            local_root=tmp_path / "unused-artifacts",
            secret=b"unused",
            staging_dir=tmp_path / "staging",
        )
        assert isinstance(store, S3ArtifactStore)
        assert store.client.meta.endpoint_url == aws_env, "AWS_ENDPOINT_URL_S3 is honoured"
        return store

    @pytest.fixture
    def http_get(self) -> HttpGet:
        return httpx.get

    @pytest.fixture
    def base_url(self) -> str:
        return "http://the-api.example"  # ignored: the bucket's endpoint serves the URL

    def after_large_put(self, store: Any, key: str) -> None:
        head = store.client.head_object(Bucket=store.bucket, Key=store.prefix + key)
        parts = -(-LARGE_SIZE // MULTIPART_THRESHOLD)
        assert head["ETag"].strip('"').endswith(f"-{parts}"), head["ETag"]  # a multipart ETag
        assert head["ContentType"] == "video/mp4"

    def test_url_stops_working_once_expired(
        self, store: ArtifactStore, http_get: HttpGet, base_url: str
    ) -> None:
        """S3 itself enforces the signed X-Amz-Date + X-Amz-Expires; moto's server checks neither
        signature nor expiry, so here the test can only check what the URL asks S3 to enforce."""
        put_bytes(store, "job1/a.mp4")
        query = parse_qs(urlsplit(store.url("job1/a.mp4", base_url, 1)).query)
        assert query["X-Amz-Expires"] == ["1"]
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert "X-Amz-Date" in query and "X-Amz-Signature" in query

    def test_small_files_go_up_in_one_piece(self, store: S3ArtifactStore) -> None:
        put_bytes(store, "job1/a.mp4")
        head = store.client.head_object(Bucket=store.bucket, Key="kinema/artifacts/job1/a.mp4")
        assert "-" not in head["ETag"]
        assert head["ContentType"] == "video/mp4"

    def test_objects_live_under_the_prefix_and_only_those_are_listed(
        self, store: S3ArtifactStore, aws_env: str
    ) -> None:
        put_bytes(store, "job1/a.mp4")
        raw = s3_client(aws_env)
        raw.put_object(Bucket=store.bucket, Key="kinema/other/x.mp4", Body=b"x")  # type: ignore[attr-defined]
        listed = raw.list_objects_v2(Bucket=store.bucket)["Contents"]  # type: ignore[attr-defined]
        assert sorted(o["Key"] for o in listed) == [
            "kinema/artifacts/job1/a.mp4",
            "kinema/other/x.mp4",
        ]
        assert store.keys() == ["job1/a.mp4"]

    def test_url_is_presigned_for_the_ttl_and_ignores_base_url(
        self, store: S3ArtifactStore, aws_env: str
    ) -> None:
        url = store.url("job1/a.mp4", "http://the-api.example", ttl_seconds=600)
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        assert f"{parts.scheme}://{parts.netloc}" == aws_env
        assert parts.path.endswith("/kinema/artifacts/job1/a.mp4")
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert query["X-Amz-Expires"] == ["600"]
        assert query["X-Amz-Signature"][0]
        capped = parse_qs(urlsplit(store.url("job1/a.mp4", "", 10**9)).query)
        assert capped["X-Amz-Expires"] == [str(MAX_PRESIGN_SECONDS)]

    def test_the_object_itself_is_private(self, store: S3ArtifactStore, aws_env: str) -> None:
        """Only the presigned URL opens it (moto checks that a signature is there, not that it
        is right or current)."""
        put_bytes(store, "job1/a.mp4")
        bare = httpx.get(f"{aws_env}/{store.bucket}/kinema/artifacts/job1/a.mp4")
        assert bare.status_code == 403

    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_no_url_for_a_bad_key(self, store: S3ArtifactStore, key: str) -> None:
        with pytest.raises(NotFound):
            store.url(key, "", 60)

    def test_a_failed_upload_keeps_the_staging_file(self, store: S3ArtifactStore) -> None:
        missing = S3ArtifactStore("no-such-bucket-kinema", "", store.client, store._staging)
        staging = missing.staging_path(".mp4")
        staging.write_bytes(PAYLOAD)
        with pytest.raises(Exception, match="NoSuchBucket"):
            missing.put("job1/a.mp4", staging)
        assert staging.exists()


@pytest.mark.parametrize("url", ["", "local", " local "])
def test_factory_opens_the_local_store_by_default(tmp_path: Path, url: str) -> None:
    store = open_artifact_store(url, local_root=tmp_path / "a", secret=b"s", staging_dir=tmp_path)
    assert isinstance(store, LocalArtifactStore)
    assert store.root == (tmp_path / "a").resolve()


def test_factory_opens_a_local_store_at_a_file_url(tmp_path: Path) -> None:
    where = tmp_path / "elsewhere"
    store = open_artifact_store(
        where.as_uri(), local_root=tmp_path / "a", secret=b"s", staging_dir=tmp_path
    )
    assert isinstance(store, LocalArtifactStore)
    assert store.root == where.resolve()


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [("s3://bkt", "bkt", ""), ("s3://bkt/", "bkt", ""), ("s3://bkt/a/b/", "bkt", "a/b/")],
)
def test_factory_parses_s3_urls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, bucket: str, prefix: str
) -> None:
    fake_aws_env(monkeypatch, "http://127.0.0.1:9", tmp_path)
    store = open_artifact_store(url, local_root=tmp_path, secret=b"s", staging_dir=tmp_path / "st")
    assert isinstance(store, S3ArtifactStore)
    assert (store.bucket, store.prefix) == (bucket, prefix)


def test_factory_honours_the_generic_aws_endpoint_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_aws_env(monkeypatch, "http://127.0.0.1:9", tmp_path)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8")
    store = open_artifact_store("s3://bkt", local_root=tmp_path, secret=b"s", staging_dir=tmp_path)
    assert isinstance(store, S3ArtifactStore)
    assert store.client.meta.endpoint_url == "http://127.0.0.1:8"


@pytest.mark.parametrize(
    "url", ["gs://bucket/x", "s3://", "s3:///prefix", "ftp://host/x", "file://host/x", "/abs/dir"]
)
def test_factory_refuses_unknown_urls(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError, match="KINEMA_STORAGE"):
        open_artifact_store(url, local_root=tmp_path, secret=b"s", staging_dir=tmp_path)
