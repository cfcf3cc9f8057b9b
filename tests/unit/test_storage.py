"""Local artifacts: atomic puts, signed expiring URLs, Range downloads, no path escapes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from kinema.config import Settings
from kinema.domain import GenerationRequest, VideoArtifact
from kinema.errors import Forbidden, NotFound
from kinema.server import create_app
from kinema.storage.local import LocalArtifactStore
from tests.conftest import Clock

PAYLOAD = bytes(range(256)) * 40


def put(storage: LocalArtifactStore, key: str) -> None:
    staging = storage.staging_path(".mp4")
    staging.write_bytes(PAYLOAD)
    assert storage.put(key, staging) == len(PAYLOAD)
    assert not staging.exists()


@pytest.fixture
def app_client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings))


def storage_of(client: TestClient) -> LocalArtifactStore:
    return client.app.state.services.artifacts  # type: ignore[attr-defined, no-any-return]


def test_signed_url_downloads_whole_and_in_ranges(app_client: TestClient) -> None:
    storage = storage_of(app_client)
    put(storage, "job1/lease.mp4")
    url = storage.url("job1/lease.mp4", "http://testserver", ttl_seconds=60)
    whole = app_client.get(url)
    assert whole.status_code == 200 and whole.content == PAYLOAD
    assert whole.headers["content-type"] == "video/mp4"
    head = app_client.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(PAYLOAD))
    part = app_client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == PAYLOAD[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(PAYLOAD)}"


def test_tampered_missing_or_expired_signatures_are_403(app_client: TestClient) -> None:
    storage = storage_of(app_client)
    put(storage, "job1/lease.mp4")
    url = storage.url("job1/lease.mp4", "http://testserver", ttl_seconds=60)
    query = parse_qs(urlsplit(url).query)
    expires, signature = query["expires"][0], query["signature"][0]
    base = "http://testserver/files/job1/lease.mp4"
    forged = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
    for bad in (
        f"{base}?expires={expires}&signature={forged}",
        f"{base}?expires={int(expires) + 3600}&signature={signature}",
        f"{base}?expires={expires}",
        base,
        f"{base}?expires=soon&signature={signature}",
        f"{base}?expires=%C2%B2&signature={signature}",
        f"{base}?expires={expires}&signature=%C3%A9",
    ):
        response = app_client.get(bad)
        assert response.status_code == 403, bad
        assert response.json()["statusCode"] == 403
    expired = storage.url("job1/lease.mp4", "http://testserver", ttl_seconds=-1)
    assert app_client.get(expired).status_code == 403


def test_other_keys_cannot_reuse_a_signature(app_client: TestClient) -> None:
    storage = storage_of(app_client)
    put(storage, "job1/a.mp4")
    put(storage, "job2/b.mp4")
    query = urlsplit(storage.url("job1/a.mp4", "http://testserver", 60)).query
    assert app_client.get(f"/files/job2/b.mp4?{query}").status_code == 403


@pytest.mark.parametrize(
    "key", ["../signing.key", "job/../../kinema.db", "/etc/passwd", ".staging/x.mp4", "a//b", ""]
)
def test_keys_cannot_leave_the_store(tmp_path: Path, key: str) -> None:
    storage = LocalArtifactStore(tmp_path / "artifacts", b"secret")
    with pytest.raises(NotFound):
        storage.path_for(key)


def test_signed_url_for_a_path_outside_the_store_is_refused(app_client: TestClient) -> None:
    storage = storage_of(app_client)
    url = storage.url("../kinema.db", "http://testserver", 60)
    assert app_client.get(url).status_code in (403, 404)
    query = parse_qs(urlsplit(url).query)
    with pytest.raises(NotFound):
        storage.verify("../kinema.db", int(query["expires"][0]), query["signature"][0])


def test_verify_rejects_bad_signatures_directly(tmp_path: Path) -> None:
    clock = Clock()
    storage = LocalArtifactStore(tmp_path / "artifacts", b"secret", clock)
    put(storage, "j/x.mp4")
    with pytest.raises(Forbidden, match="invalid"):
        storage.verify("j/x.mp4", int(clock()) + 60, "nope")


def signed(storage: LocalArtifactStore, key: str, ttl_seconds: int) -> tuple[int, str]:
    query = parse_qs(urlsplit(storage.url(key, "http://testserver", ttl_seconds)).query)
    return int(query["expires"][0]), query["signature"][0]


def test_a_signed_url_is_valid_until_it_expires(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    storage = LocalArtifactStore(tmp_path / "artifacts", b"secret", clock)
    put(storage, "j/x.mp4")
    expires, signature = signed(storage, "j/x.mp4", ttl_seconds=60)
    assert expires == 1060
    clock.now += 59.5
    assert storage.verify("j/x.mp4", expires, signature) == storage.path_for("j/x.mp4")
    clock.now = 1060.0
    assert storage.verify("j/x.mp4", expires, signature) == storage.path_for("j/x.mp4")
    clock.now += 0.001
    with pytest.raises(Forbidden, match="expired"):
        storage.verify("j/x.mp4", expires, signature)


def test_video_urls_use_the_public_url_behind_a_proxy(settings: Settings) -> None:
    public = settings.model_copy(update={"public_url": "https://videos.example.com/kinema/"})
    client = TestClient(create_app(public))
    services = client.app.state.services  # type: ignore[attr-defined]
    key, raw_key = services.keys.create("k")
    job = services.jobs.submit(key, GenerationRequest(model="tiny-ltx2", prompt="p"))
    lease = services.store.claim(["tiny-ltx2"], "w", 30)
    put(services.artifacts, f"{job.id}/{lease.token}.mp4")
    artifact = VideoArtifact(f"{job.id}/{lease.token}.mp4", "x.mp4", 10, 5.0, 96, 54, 24.0, True)
    services.store.complete(lease, artifact, {})
    headers = {"Authorization": f"Bearer {raw_key}"}
    body = client.get(f"/v2/video/generations?generation_id={job.id}", headers=headers).json()
    url = body["video"]["url"]
    assert url.startswith(f"https://videos.example.com/kinema/files/{job.id}/")
    local = url.replace("https://videos.example.com/kinema", "http://testserver")
    assert client.get(local).content == PAYLOAD
