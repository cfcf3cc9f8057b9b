"""Retention: finished jobs past KINEMA_RETENTION_HOURS, and deleted ones, are removed with their
files by each API process's housekeeping, through the real app."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi.testclient import TestClient

from kinema.config import Settings
from kinema.domain import GenerationRequest, Job, VideoArtifact
from kinema.server import create_app
from kinema.service import Services

MODEL = "tiny-ltx2"


def finish_one(services: Services, owner_name: str = "owner") -> tuple[str, Job]:
    """A job run to completion by hand, its mp4 and thumbnail in the artifact store."""
    key, raw = services.keys.create(owner_name)
    job = services.jobs.submit(key, GenerationRequest(model=MODEL, prompt="p", seed=1))
    lease = services.store.claim([MODEL], "w", 30)
    assert lease is not None and lease.job.id == job.id
    for suffix in ("mp4", "jpg"):
        staging = services.artifacts.staging_path(f".{suffix}")
        staging.write_bytes(b"clip bytes")
        services.artifacts.put(f"{job.id}/t.{suffix}", staging)
    artifact = VideoArtifact(f"{job.id}/t.mp4", "x.mp4", 10, 5.0, 96, 54, 24.0, True)
    services.store.complete(lease, artifact, {})
    return raw, job


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "housekeeping did not get there in time"
        time.sleep(0.02)


def test_a_job_past_retention_is_removed_with_its_files(settings: Settings) -> None:
    settings = settings.model_copy(
        update={"retention_hours": 4 / 3600, "housekeeping_seconds": 0.05}
    )
    with TestClient(create_app(settings)) as client:
        services: Services = client.app.state.services  # type: ignore[attr-defined]
        raw, job = finish_one(services)
        auth = {"Authorization": f"Bearer {raw}"}
        video = client.get(f"/v1/videos/{job.id}", headers=auth).json()
        completed = services.store.get_job(job.id)
        assert completed is not None and completed.completed_at is not None
        assert video["expires_at"] == int(completed.completed_at + 4)
        assert services.artifacts.keys(f"{job.id}/") == [f"{job.id}/t.jpg", f"{job.id}/t.mp4"]
        # The row goes first, then the files, in one housekeeping pass.
        wait_until(lambda: services.artifacts.keys(f"{job.id}/") == [])
        assert services.store.count_jobs() == 0
        gone = client.get(f"/v1/videos/{job.id}", headers=auth)
        assert gone.status_code == 404


def test_without_retention_jobs_stay_but_deleted_ones_are_removed(settings: Settings) -> None:
    settings = settings.model_copy(update={"housekeeping_seconds": 0.05})
    with TestClient(create_app(settings)) as client:
        services: Services = client.app.state.services  # type: ignore[attr-defined]
        raw, kept = finish_one(services, "keeper")
        _, deleted = finish_one(services, "deleter")
        owner = services.keys.authenticate(raw)
        assert services.jobs.view(kept, "http://x").expires_at is None
        services.store.delete_job(deleted.id)
        wait_until(lambda: services.artifacts.keys(f"{deleted.id}/") == [])
        assert services.store.count_jobs() == 1
        assert services.jobs.get(owner, kept.id, "http://x").job.id == kept.id
        assert services.artifacts.keys(f"{kept.id}/") != []
