"""Retention: finished jobs past KINEMA_RETENTION_HOURS, and deleted ones, are removed with their
files by each API process's housekeeping; its passes run on a clock the tests move."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from kinema.api.app import build_app
from kinema.background.housekeeping import housekeeping, purge_expired
from kinema.config import Settings
from kinema.domain import GenerationRequest, Job, VideoArtifact
from kinema.service import Services
from kinema.wiring import build_services
from tests.conftest import Clock, count_jobs

MODEL = "tiny-ltx2"
RETENTION_HOURS = 2.0
RETENTION_SECONDS = RETENTION_HOURS * 3600


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


def completed_at(services: Services, job: Job) -> float:
    completed = services.store.get_job(job.id)
    assert completed is not None and completed.completed_at is not None
    return completed.completed_at


def test_a_job_past_retention_is_removed_with_its_files(settings: Settings) -> None:
    services = build_services(settings.model_copy(update={"retention_hours": RETENTION_HOURS}))
    with TestClient(build_app(services)) as client:
        raw, job = finish_one(services)
        auth = {"Authorization": f"Bearer {raw}"}
        video = client.get(f"/v1/videos/{job.id}", headers=auth).json()
        ended = completed_at(services, job)
        assert video["expires_at"] == int(ended + RETENTION_SECONDS)
        files = [f"{job.id}/t.jpg", f"{job.id}/t.mp4"]
        assert services.artifacts.keys(f"{job.id}/") == files
        clock = Clock(ended + RETENTION_SECONDS - 1)
        assert purge_expired(services, clock()) == 0
        assert services.artifacts.keys(f"{job.id}/") == files
        assert client.get(f"/v1/videos/{job.id}", headers=auth).status_code == 200
        clock.now += 2
        # The row goes first, then the files, in one housekeeping pass.
        assert purge_expired(services, clock()) == 1
        assert services.artifacts.keys(f"{job.id}/") == []
        assert count_jobs(services.store) == 0
        gone = client.get(f"/v1/videos/{job.id}", headers=auth)
        assert gone.status_code == 404


def test_without_retention_jobs_stay_but_deleted_ones_are_removed(settings: Settings) -> None:
    services = build_services(settings)
    with TestClient(build_app(services)):
        raw, kept = finish_one(services, "keeper")
        _, deleted = finish_one(services, "deleter")
        owner = services.keys.authenticate(raw)
        assert services.jobs.view(kept, "http://x").expires_at is None
        services.store.delete_job(deleted.id)
        assert services.artifacts.keys(f"{deleted.id}/") != []
        far_future = Clock(completed_at(services, kept) + 10 * 365 * 24 * 3600)
        assert purge_expired(services, far_future()) == 1
        assert services.artifacts.keys(f"{deleted.id}/") == []
        assert count_jobs(services.store) == 1
        assert services.jobs.get(owner, kept.id, "http://x").job.id == kept.id
        assert services.artifacts.keys(f"{kept.id}/") != []


def test_the_housekeeping_loop_purges_at_its_clock_s_time(settings: Settings) -> None:
    services = build_services(settings.model_copy(update={"retention_hours": RETENTION_HOURS}))
    _, job = finish_one(services)
    clock = Clock(completed_at(services, job) + RETENTION_SECONDS + 1)
    pass_began = threading.Event()

    def observed_clock() -> float:
        pass_began.set()
        return clock()

    loop = housekeeping(services, observed_clock)
    loop.start()
    assert pass_began.wait(10), "the loop never ran a pass"
    loop.stop()  # waits for the pass under way
    assert services.artifacts.keys(f"{job.id}/") == []
    assert count_jobs(services.store) == 0
    services.close()
