"""The SQLite job store: claims, leases, fencing, requeue and keys."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from kinema.domain import ApiKey, GenerationRequest, Job, JobStatus, VideoArtifact
from kinema.errors import LeaseLost
from kinema.service import hash_key
from kinema.store.sql import SqlJobStore, open_store

MODEL = "tiny-ltx2"
ARTIFACT = VideoArtifact("job/t.mp4", "job.mp4", 10, 5.0, 96, 54, 24.0, True)


@pytest.fixture
def store(tmp_path: Path) -> SqlJobStore:
    return open_store(tmp_path / "jobs.db", max_attempts=2)


def add(store: SqlJobStore, job_id: str, model: str = MODEL) -> Job:
    job = Job(
        id=job_id,
        owner="owner",
        request=GenerationRequest(model=model, prompt="p", seed=1),
        status=JobStatus.QUEUED,
        created_at=time.time(),
    )
    store.add_job(job)
    return job


def test_claims_in_submission_order_and_only_served_models(store: SqlJobStore) -> None:
    add(store, "a")
    add(store, "other", model="ltx-2")
    add(store, "b")
    first = store.claim([MODEL], "w1", 30)
    second = store.claim([MODEL], "w2", 30)
    assert first and second
    assert (first.job.id, second.job.id) == ("a", "b")
    assert first.job.status is JobStatus.RUNNING and first.job.attempts == 1
    assert store.claim([MODEL], "w3", 30) is None


def test_queue_position_counts_jobs_ahead(store: SqlJobStore) -> None:
    jobs = [add(store, name) for name in "abc"]
    assert [store.queue_position(job) for job in jobs] == [0, 1, 2]
    store.claim([MODEL], "w", 30)
    assert store.queue_position(jobs[2]) == 1


def test_complete_needs_the_current_lease(store: SqlJobStore) -> None:
    add(store, "a")
    lease = store.claim([MODEL], "w", 30)
    assert lease is not None
    assert store.report_progress(lease, 42.0, "denoising") is False
    store.complete(lease, ARTIFACT, {"timings": {"generate": 1.0}})
    done = store.get_job("a")
    assert done and done.status is JobStatus.COMPLETED and done.artifact == ARTIFACT
    assert done.progress == 100.0
    with pytest.raises(LeaseLost):
        store.complete(lease, ARTIFACT, {})


def test_expired_lease_is_requeued_and_the_old_holder_is_fenced_off(store: SqlJobStore) -> None:
    add(store, "a")
    stale = store.claim([MODEL], "dead", 0.01)
    assert stale is not None
    time.sleep(0.05)
    fresh = store.claim([MODEL], "alive", 30)
    assert fresh is not None and fresh.job.id == "a" and fresh.job.attempts == 2
    for call in (
        lambda: store.heartbeat(stale, 30),
        lambda: store.report_progress(stale, 1.0, "x"),
        lambda: store.complete(stale, ARTIFACT, {}),
    ):
        with pytest.raises(LeaseLost):
            call()
    store.complete(fresh, ARTIFACT, {})
    job = store.get_job("a")
    assert job and job.status is JobStatus.COMPLETED


def test_heartbeat_keeps_a_lease_alive(store: SqlJobStore) -> None:
    add(store, "a")
    lease = store.claim([MODEL], "w", 0.2)
    assert lease is not None
    for _ in range(3):
        time.sleep(0.1)
        lease = store.heartbeat(lease, 0.2)
    assert store.claim([MODEL], "thief", 30) is None


def test_a_job_out_of_attempts_ends_in_error(store: SqlJobStore) -> None:
    add(store, "a")
    for _ in range(2):
        assert store.claim([MODEL], "dies", 0.01) is not None
        time.sleep(0.05)
    assert store.claim([MODEL], "w", 30) is None
    job = store.get_job("a")
    assert job and job.status is JobStatus.FAILED and job.error_name == "WorkerLost"


def test_release_puts_the_job_back_without_spending_an_attempt(store: SqlJobStore) -> None:
    add(store, "a")
    lease = store.claim([MODEL], "w", 30)
    assert lease is not None
    store.release(lease)
    job = store.get_job("a")
    assert job and job.status is JobStatus.QUEUED and job.attempts == 0


def test_fail_records_the_error(store: SqlJobStore) -> None:
    add(store, "a")
    lease = store.claim([MODEL], "w", 30)
    assert lease is not None
    store.fail(lease, "GenerationFailed", "out of memory", {"timings": {}})
    job = store.get_job("a")
    assert job and job.status is JobStatus.FAILED
    assert (job.error_name, job.error_message) == ("GenerationFailed", "out of memory")


def test_jobs_survive_reopening_the_database(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    first = open_store(path)
    add(first, "a")
    first.close()
    second = open_store(path)
    job = second.get_job("a")
    assert job and job.status is JobStatus.QUEUED and job.request.prompt == "p"


def test_keys_are_stored_only_as_hashes(store: SqlJobStore, tmp_path: Path) -> None:
    raw = "kin_secret_value_123"
    store.add_key(ApiKey("id1", "ci", time.time()), hash_key(raw))
    assert store.find_key(hash_key(raw)) is not None
    assert store.find_key(hash_key("kin_other")) is None
    rows = sqlite3.connect(tmp_path / "jobs.db").execute("select * from api_keys").fetchall()
    assert raw not in repr(rows)
    assert store.revoke_key("ci") == 1
    assert store.find_key(hash_key(raw)) is None
    assert store.list_keys()[0].revoked
