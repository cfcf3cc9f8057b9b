"""The store contract: one test class run against SQLite and PostgreSQL.

PostgreSQL is the server of tests/pg.py (127.0.0.1:5432 by default); each run works in its own
fresh database, dropped at the end. Nothing skips: without PostgreSQL, its tests fail.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from kinema.domain import ApiKey, GenerationRequest, Job, JobStatus, VideoArtifact
from kinema.errors import LeaseLost
from kinema.service import hash_key
from kinema.store import (
    JobStore,
    SchemaNotCurrent,
    SqlJobStore,
    head_revision,
    migrate,
    open_store_url,
    schema_status,
)
from kinema.store import db as store_db
from kinema.store.db import create_engine, libpq_conninfo
from kinema.store.listen import APPLICATION_NAME
from kinema.store.migrations import INITIAL_REVISION
from kinema.store.schema import jobs as jobs_table
from kinema.store_protocol import STAGE_BUCKETS
from tests.conftest import Clock, count_jobs
from tests.pg import create_database, drop_database, fresh_database

MODEL = "tiny-ltx2"
OTHER_MODEL = "ltx-2"
ARTIFACT = VideoArtifact("job/t.mp4", "job.mp4", 10, 5.0, 96, 54, 24.0, True)
BACKENDS = ["sqlite", "postgresql"]
_ids = itertools.count()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """This run's own PostgreSQL database, migrated once; tests empty it before they start."""
    with fresh_database() as url:
        migrate(url)
        yield url


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(pg_url)
    yield engine
    engine.dispose()


@dataclass
class Backend:
    """Opens stores of one kind over one database; closes them all at the end of the test."""

    name: str
    url: str
    opened: list[JobStore] = field(default_factory=list)

    def open(self, max_attempts: int = 2, clock: Clock | None = None) -> JobStore:
        store = open_store_url(self.url, max_attempts=max_attempts, clock=clock or time.time)
        self.opened.append(store)
        return store

    def raw_keys(self) -> str:
        """Everything the backend holds about API keys, as text."""
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return repr(conn.execute(sa.text("select * from api_keys")).all())
        finally:
            engine.dispose()

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        chosen = Backend("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}")
    else:
        engine: sa.Engine = request.getfixturevalue("pg_engine")
        with engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE jobs, api_keys, workers, stage_stats RESTART IDENTITY"))
        chosen = Backend("postgresql", request.getfixturevalue("pg_url"))
    yield chosen
    chosen.close()


@pytest.fixture
def store(backend: Backend) -> JobStore:
    return backend.open()


@pytest.fixture
def clock() -> Clock:
    return Clock(now=time.time())  # starts now, so the rows it stamps look current


@pytest.fixture
def clocked(backend: Backend, clock: Clock) -> JobStore:
    """A store on `clock`: leases expire when the test moves it."""
    return backend.open(clock=clock)


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes URLs of new, empty databases (no schema) of one SQL kind."""
    made: list[str] = []

    def make() -> str:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / f'empty-{len(made)}.db'}"
        else:
            url = create_database()
        made.append(url)
        return url

    yield make
    if request.param == "postgresql":
        for url in made:
            drop_database(url)


def add(store: JobStore, job_id: str | None = None, model: str = MODEL, owner: str = "o") -> Job:
    job = Job(
        id=job_id or f"job-{next(_ids)}",
        owner=owner,
        request=GenerationRequest(model=model, prompt="p", seed=1),
        status=JobStatus.QUEUED,
        created_at=time.time(),
    )
    store.add_job(job)
    return job


def add_hooked(store: JobStore) -> None:
    """Job "hooked", with a webhook to deliver once it ends."""
    url = "https://example.com/h"
    job = Job(
        id="hooked",
        owner="o",
        request=GenerationRequest(model=MODEL, prompt="p", seed=1),
        status=JobStatus.QUEUED,
        created_at=time.time(),
        meta={"webhook": {"url": url, "state": "pending", "attempts": []}},
        callback_url=url,
    )
    store.add_job(job)


def status_of(store: JobStore, job_id: str) -> JobStatus:
    job = store.get_job(job_id)
    assert job is not None
    return job.status


def claim_ids(store: JobStore, count: int, models: tuple[str, ...] = (MODEL,)) -> list[str]:
    leases = [store.claim(list(models), f"w{i}", 30) for i in range(count)]
    return [lease.job.id for lease in leases if lease is not None]


def run_sql(url: str, statement: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


class TestJobStore:
    # -- claims, leases, fencing ---------------------------------------------------------------

    def test_claims_in_submission_order_and_only_served_models(self, store: JobStore) -> None:
        add(store, "a")
        add(store, "other", model=OTHER_MODEL)
        add(store, "b")
        first = store.claim([MODEL], "w1", 30)
        second = store.claim([MODEL], "w2", 30)
        assert first and second
        assert (first.job.id, second.job.id) == ("a", "b")
        assert first.job.status is JobStatus.RUNNING and first.job.attempts == 1
        assert first.job.started_at is not None and first.worker_id == "w1"
        assert store.claim([MODEL], "w3", 30) is None
        assert store.claim([], "w4", 30) is None
        both = store.claim([MODEL, OTHER_MODEL], "w5", 30)
        assert both is not None and both.job.id == "other"

    def test_queue_position_counts_jobs_ahead(self, store: JobStore) -> None:
        jobs = [add(store, name) for name in "abc"]
        assert [store.queue_position(job) for job in jobs] == [0, 1, 2]
        store.claim([MODEL], "w", 30)
        assert store.queue_position(jobs[2]) == 1

    def test_complete_needs_the_current_lease(self, store: JobStore) -> None:
        add(store, "a")
        lease = store.claim([MODEL], "w", 30)
        assert lease is not None
        assert store.report_progress(lease, 42.0, "denoising") is False
        running = store.get_job("a")
        assert running and (running.progress, running.stage) == (42.0, "denoising")
        store.complete(lease, ARTIFACT, {"timings": {"generate": 1.0}})
        done = store.get_job("a")
        assert done and done.status is JobStatus.COMPLETED and done.artifact == ARTIFACT
        assert done.progress == 100.0 and done.completed_at is not None
        assert done.meta == {"timings": {"generate": 1.0}}
        with pytest.raises(LeaseLost):
            store.complete(lease, ARTIFACT, {})

    def test_expired_lease_is_requeued_and_the_old_holder_is_fenced_off(
        self, clocked: JobStore, clock: Clock
    ) -> None:
        store = clocked
        add(store, "a")
        stale = store.claim([MODEL], "dead", 0.01)
        assert stale is not None
        clock.now += 0.05
        fresh = store.claim([MODEL], "alive", 30)
        assert fresh is not None and fresh.job.id == "a" and fresh.job.attempts == 2
        for call in (
            lambda: store.heartbeat(stale, 30),
            lambda: store.report_progress(stale, 1.0, "x"),
            lambda: store.complete(stale, ARTIFACT, {}),
            lambda: store.fail(stale, "X", "y", {}),
            lambda: store.mark_canceled(stale),
            lambda: store.release(stale),
        ):
            with pytest.raises(LeaseLost):
                call()
        store.complete(fresh, ARTIFACT, {})
        assert status_of(store, "a") is JobStatus.COMPLETED

    def test_heartbeat_keeps_a_lease_alive(self, clocked: JobStore, clock: Clock) -> None:
        store = clocked
        add(store, "a")
        lease = store.claim([MODEL], "w", 0.3)
        assert lease is not None
        for _ in range(3):
            clock.now += 0.2
            lease = store.heartbeat(lease, 0.3)
        assert store.claim([MODEL], "thief", 30) is None

    def test_a_job_out_of_attempts_ends_in_error(self, clocked: JobStore, clock: Clock) -> None:
        store = clocked
        add(store, "a")
        for _ in range(2):
            assert store.claim([MODEL], "dies", 0.01) is not None
            clock.now += 0.05
        assert store.claim([MODEL], "w", 30) is None
        job = store.get_job("a")
        assert job and job.status is JobStatus.FAILED and job.error_name == "WorkerLost"
        assert job.attempts == 2 and job.completed_at is not None

    def test_release_puts_the_job_back_without_spending_an_attempt(self, store: JobStore) -> None:
        add(store, "a")
        lease = store.claim([MODEL], "w", 30)
        assert lease is not None
        store.release(lease)
        job = store.get_job("a")
        assert job and job.status is JobStatus.QUEUED and job.attempts == 0
        again = store.claim([MODEL], "w2", 30)
        assert again is not None and again.job.id == "a" and again.job.attempts == 1

    def test_fail_records_the_error_and_merges_meta(self, store: JobStore) -> None:
        add(store, "a")
        lease = store.claim([MODEL], "w", 30)
        assert lease is not None
        store.fail(lease, "GenerationFailed", "out of memory", {"timings": {}})
        job = store.get_job("a")
        assert job and job.status is JobStatus.FAILED
        assert (job.error_name, job.error_message) == ("GenerationFailed", "out of memory")
        assert job.meta == {"timings": {}}

    def test_concurrent_claims_never_hand_out_a_job_twice(self, store: JobStore) -> None:
        ids = {add(store, owner=f"owner{i % 4}").id for i in range(200)}
        claimed: list[str] = []
        errors: list[BaseException] = []

        def claimer(worker: str) -> None:
            try:
                while True:
                    lease = store.claim([MODEL], worker, 60)
                    if lease is not None:
                        claimed.append(lease.job.id)
                    elif store.count_queued() == 0:
                        return
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors
        assert len(claimed) == len(set(claimed)) == 200 and set(claimed) == ids
        stats = store.stats()
        assert stats.running == {MODEL: 200} and stats.queued == {}

    # -- fairness ------------------------------------------------------------------------------

    def test_one_owner_s_backlog_does_not_starve_another(self, store: JobStore) -> None:
        for _ in range(50):
            add(store, owner="A")
        lonely = add(store, owner="B")
        assert lonely.id in claim_ids(store, 2)

    def test_an_owner_deep_in_the_queue_still_gets_its_turn(self, store: JobStore) -> None:
        for _ in range(150):  # deeper than the head of the queue a claim looks at first
            add(store, owner="A")
        lonely = add(store, owner="B")
        claimed = claim_ids(store, 2)
        assert claimed[1] == lonely.id
        assert claim_ids(store, 1)[0] != lonely.id

    def test_the_owner_with_fewest_running_jobs_goes_first(self, store: JobStore) -> None:
        add(store, "a1", owner="A")
        add(store, "a2", owner="A")
        add(store, "b1", owner="B")
        add(store, "c1", owner="C", model=OTHER_MODEL)  # not served: does not take a turn
        assert claim_ids(store, 4) == ["a1", "b1", "a2"]

    def test_running_jobs_of_other_models_count_toward_an_owner_s_share(
        self, store: JobStore
    ) -> None:
        add(store, "a-other", owner="A", model=OTHER_MODEL)
        assert claim_ids(store, 1, (OTHER_MODEL,)) == ["a-other"]
        add(store, "a1", owner="A")
        add(store, "b1", owner="B")
        assert claim_ids(store, 2) == ["b1", "a1"]

    # -- cancel --------------------------------------------------------------------------------

    def test_cancel_ends_a_queued_job_at_once(self, store: JobStore) -> None:
        add(store, "a")
        job = store.request_cancel("a")
        assert job is not None and job.status is JobStatus.CANCELED
        assert (job.error_name, job.error_message) == ("Canceled", "the generation was canceled")
        assert job.completed_at is not None
        assert store.get_job("a") == job
        assert store.claim([MODEL], "w", 30) is None
        assert store.count_queued() == 0

    def test_cancel_asks_a_running_job_to_stop(self, store: JobStore) -> None:
        add(store, "a")
        lease = store.claim([MODEL], "w", 30)
        assert lease is not None
        job = store.request_cancel("a")
        assert job is not None and job.status is JobStatus.RUNNING and job.cancel_requested
        assert store.report_progress(lease, 10.0, "denoising") is True
        store.mark_canceled(lease)
        done = store.get_job("a")
        assert done and done.status is JobStatus.CANCELED and done.error_name == "Canceled"
        assert done.completed_at is not None

    def test_cancel_leaves_a_finished_job_and_ignores_unknown_ids(self, store: JobStore) -> None:
        add(store, "a")
        lease = store.claim([MODEL], "w", 30)
        assert lease is not None
        store.complete(lease, ARTIFACT, {})
        before = store.get_job("a")
        assert store.request_cancel("a") == before
        assert store.request_cancel("nope") is None

    def test_a_canceled_job_whose_worker_died_ends_canceled_not_requeued(
        self, clocked: JobStore, clock: Clock
    ) -> None:
        store = clocked
        add(store, "a")
        assert store.claim([MODEL], "dies", 0.05) is not None
        store.request_cancel("a")
        clock.now += 0.1
        assert store.claim([MODEL], "w", 30) is None
        job = store.get_job("a")
        assert job and job.status is JobStatus.CANCELED and job.error_name == "Canceled"

    # -- counts and stats ----------------------------------------------------------------------

    def test_count_queued_per_owner_and_in_all(self, store: JobStore) -> None:
        for owner in "AAB":
            add(store, owner=owner)
        claim_ids(store, 1)  # A's first job
        assert (store.count_queued("A"), store.count_queued("B")) == (1, 1)
        assert (store.count_queued("C"), store.count_queued(), count_jobs(store)) == (0, 2, 3)
        assert (store.queued_counts("A"), store.queued_counts("C")) == ((1, 2), (0, 2))

    def test_queue_counts_follow_every_way_into_and_out_of_the_queue(self, store: JobStore) -> None:
        for job_id, owner, model in [
            ("a1", "A", MODEL),
            ("a2", "A", MODEL),
            ("a3", "A", OTHER_MODEL),
            ("b1", "B", MODEL),
            ("b2", "B", MODEL),
            ("b3", "B", MODEL),
        ]:
            add(store, job_id, model=model, owner=owner)
        assert (store.count_queued("A"), store.count_queued("B"), store.count_queued()) == (3, 3, 6)
        lease = store.claim([MODEL], "w", 30)
        assert lease is not None and lease.job.id == "a1"
        store.request_cancel("b1")
        store.delete_job("b2")
        assert (store.count_queued("A"), store.count_queued("B"), store.count_queued()) == (2, 1, 3)
        store.release(lease)  # back into the queue
        assert (store.count_queued("A"), store.count_queued()) == (3, 4)
        queued = [store.get_job(job_id) for job_id in ("a1", "a2", "b3")]
        assert [store.queue_position(job) for job in queued if job] == [0, 1, 2]
        other = store.get_job("a3")
        assert other is not None and store.queue_position(other) == 0, "counted per model"
        store.request_cancel("a3")
        assert (store.count_queued("A"), store.count_queued("B"), store.count_queued()) == (2, 1, 3)

    def test_stage_histograms_count_completed_jobs_only(self, store: JobStore) -> None:
        assert store.stage_histograms() == []
        jobs = [add(store) for _ in range(4)]
        leases = [store.claim([MODEL], "w", 30) for _ in jobs[:3]]
        assert all(leases)
        first, second, failed = leases
        assert first and second and failed
        store.complete(first, ARTIFACT, {"timings": {"generate": 1.5, "encode": 0.25}})
        store.complete(second, ARTIFACT, {"timings": {"generate": 2.5, "notes": "n/a"}})
        store.fail(failed, "GenerationFailed", "boom", {"timings": {"generate": 9.0}})
        histograms = {(h.model, h.stage): h for h in store.stage_histograms()}
        assert sorted(histograms) == [(MODEL, "encode"), (MODEL, "generate")]
        generate = histograms[(MODEL, "generate")]
        assert len(generate.counts) == len(STAGE_BUCKETS) + 1
        assert generate.counts[STAGE_BUCKETS.index(2.5)] == 2  # 1.5 and 2.5 (bounds are ≤)
        assert sum(generate.counts) == 2 and generate.total_seconds == pytest.approx(4.0)
        encode = histograms[(MODEL, "encode")]
        assert encode.counts[STAGE_BUCKETS.index(0.25)] == 1 and sum(encode.counts) == 1

    def test_stats_counts_queue_depth_running_and_statuses(self, store: JobStore) -> None:
        assert store.stats().by_status == dict.fromkeys((s.value for s in JobStatus), 0)
        for model in (MODEL, MODEL, MODEL, OTHER_MODEL):
            add(store, model=model)
        done = store.claim([MODEL], "w", 30)
        running = store.claim([MODEL], "w", 30)
        assert done and running
        store.complete(done, ARTIFACT, {})
        canceled = add(store, model=OTHER_MODEL)
        store.request_cancel(canceled.id)
        stats = store.stats()
        assert stats.queued == {MODEL: 1, OTHER_MODEL: 1}
        assert stats.running == {MODEL: 1}
        assert stats.by_status == {
            "queued": 2,
            "running": 1,
            "completed": 1,
            "failed": 0,
            "canceled": 1,
        }

    # -- workers -------------------------------------------------------------------------------

    def test_worker_liveness(self, store: JobStore) -> None:
        assert store.live_workers(60) == {}
        store.register_worker("w1", [MODEL, OTHER_MODEL])
        store.register_worker("w2", [MODEL])
        assert store.live_workers(60) == {MODEL: 2, OTHER_MODEL: 1}
        time.sleep(0.3)
        store.worker_seen("w2")
        assert store.live_workers(0.2) == {MODEL: 1}
        store.register_worker("w1", [OTHER_MODEL])  # a restart under the same id
        assert store.live_workers(0.2) == {MODEL: 1, OTHER_MODEL: 1}
        store.forget_worker("w2")
        store.forget_worker("never-registered")
        store.worker_seen("never-registered")
        assert store.live_workers(60) == {OTHER_MODEL: 1}

    # -- wake-ups ------------------------------------------------------------------------------

    def test_wait_for_work_wakes_up_when_a_job_arrives(self, backend: Backend) -> None:
        waiter, submitter = backend.open(), backend.open()
        woke: list[float] = []
        thread = threading.Thread(
            target=lambda: (waiter.wait_for_work([MODEL], 10), woke.append(time.monotonic()))
        )
        thread.start()
        time.sleep(0.5)
        add(submitter, model=OTHER_MODEL)  # work for someone else: keep waiting
        time.sleep(0.5)
        assert not woke
        added_at = time.monotonic()
        add(submitter)
        thread.join(10)
        assert woke and woke[0] - added_at < 1.0
        assert waiter.claim([MODEL], "w", 30) is not None

    def test_wait_for_work_times_out_when_nothing_comes(self, store: JobStore) -> None:
        start = time.monotonic()
        store.wait_for_work([MODEL], 0.5)
        assert 0.45 <= time.monotonic() - start < 2.0

    def test_wait_for_work_wakes_up_for_an_expiring_lease(self, store: JobStore) -> None:
        add(store, "a")
        assert store.claim([MODEL], "dies", 0.3) is not None
        start = time.monotonic()
        store.wait_for_work([MODEL], 10)
        assert time.monotonic() - start < 2.0
        again = store.claim([MODEL], "w", 30)
        assert again is not None and again.job.attempts == 2

    def test_wait_for_work_survives_a_lost_listen_connection(
        self, pg_engine: sa.Engine, pg_url: str
    ) -> None:
        backend = Backend("postgresql", pg_url)
        try:
            waiter, submitter = backend.open(), backend.open()
            waiter.wait_for_work([MODEL], 0.1)  # listening now
            with pg_engine.begin() as conn:
                killed = conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND application_name = :name"
                    ),
                    {"name": APPLICATION_NAME},
                ).all()
            assert killed
            waiter.wait_for_work([MODEL], 0.5)  # notices, logs, does not raise
            timer = threading.Timer(0.5, lambda: add(submitter, "late"))
            timer.start()
            start = time.monotonic()
            waiter.wait_for_work([MODEL], 10)  # listens again
            timer.join()
            assert time.monotonic() - start < 1.5
            lease = waiter.claim([MODEL], "w", 30)
            assert lease is not None and lease.job.id == "late"
        finally:
            backend.close()

    # -- listing and deleting ------------------------------------------------------------------

    def test_list_jobs_pages_an_owner_s_jobs_both_ways(self, store: JobStore) -> None:
        mine = [add(store, f"m{i}", owner="me").id for i in range(5)]
        add(store, "theirs", owner="them")
        assert [j.id for j in store.list_jobs("me", newest_first=True)] == mine[::-1]
        assert [j.id for j in store.list_jobs("me", limit=2, newest_first=False)] == mine[:2]
        after = store.list_jobs("me", after="m3", limit=10, newest_first=True)
        assert [j.id for j in after] == ["m2", "m1", "m0"]
        after = store.list_jobs("me", after="m1", limit=2, newest_first=False)
        assert [j.id for j in after] == ["m2", "m3"]
        assert len(store.list_jobs(None, limit=100, newest_first=True)) == 6

    def test_delete_hides_a_job_and_cancels_it_if_pending(self, store: JobStore) -> None:
        add(store, "queued")
        add(store, "kept")
        deleted = store.delete_job("queued")
        assert deleted is not None and deleted.status is JobStatus.CANCELED
        assert store.get_job("queued") is None
        assert [j.id for j in store.list_jobs("o", newest_first=True)] == ["kept"]
        assert store.claim([MODEL], "w", 30) is not None  # "kept", not the deleted one
        assert store.delete_job("nope") is None

    def test_a_job_deleted_while_running_cannot_complete(self, store: JobStore) -> None:
        add(store, "a")
        lease = store.claim([MODEL], "w", 30)
        assert lease is not None
        store.delete_job("a")
        assert store.report_progress(lease, 50.0, "denoising") is True  # asked to stop
        with pytest.raises(LeaseLost):
            store.complete(lease, ARTIFACT, {})
        assert store.get_job("a") is None
        assert store.stats().by_status["canceled"] == 1
        assert store.stats().by_status["completed"] == 0

    def test_purge_removes_ended_jobs_past_retention_and_deleted_ones(
        self, store: JobStore
    ) -> None:
        for name in ("old", "recent", "deleted", "running", "queued"):
            add(store, name)
        leases = {name: store.claim([MODEL], "w", 30) for name in ("old", "recent", "deleted")}
        assert all(leases.values())
        store.complete(leases["old"], ARTIFACT, {})  # type: ignore[arg-type]
        cutoff = time.time() + 0.001
        time.sleep(0.01)
        store.complete(leases["recent"], ARTIFACT, {})  # type: ignore[arg-type]
        store.fail(leases["deleted"], "GenerationFailed", "x", {})  # type: ignore[arg-type]
        store.delete_job("deleted")
        running = store.claim([MODEL], "w", 30)
        assert running is not None and running.job.id == "running"
        store.delete_job("running")  # deleted, but not ended yet: kept until its worker stops

        removed = store.purge_jobs(cutoff)
        assert sorted(job.id for job in removed) == ["deleted", "old"]
        assert store.purge_jobs(cutoff) == [], "a purged job is returned once"
        assert store.get_job("old") is None
        assert {job.id for job in store.list_jobs("o", newest_first=True)} == {"recent", "queued"}
        assert count_jobs(store) == 3  # recent, queued and the deleted running one
        assert [job.id for job in store.purge_jobs(time.time() + 1, limit=1)] == ["recent"]

    def test_purge_keeps_a_job_until_its_webhook_is_done(self, store: JobStore) -> None:
        add_hooked(store)
        store.request_cancel("hooked")
        assert store.purge_jobs(time.time() + 60) == []
        claimed = store.claim_webhook(time.time() + 1, 30)
        assert claimed is not None
        store.record_webhook_attempt("hooked", {"status_code": 204}, "delivered", None)
        assert [j.id for j in store.purge_jobs(time.time() + 60)] == ["hooked"]

    # -- webhooks ------------------------------------------------------------------------------

    def test_webhooks_are_claimed_once_due_and_record_their_attempts(self, store: JobStore) -> None:
        add_hooked(store)
        add(store, "plain")
        now = time.time()
        assert store.claim_webhook(now + 1, 30) is None, "not final yet: nothing to deliver"
        lease = store.claim([MODEL], "w", 30)
        assert lease is not None and lease.job.callback_url == "https://example.com/h"
        store.complete(lease, ARTIFACT, {})
        claimed = store.claim_webhook(now + 1, 30)
        assert claimed is not None and claimed.id == "hooked"
        assert store.claim_webhook(now + 2, 30) is None, "held by the first deliverer"
        store.record_webhook_attempt("hooked", {"status_code": 500}, "pending", now + 40)
        assert store.claim_webhook(now + 39, 30) is None
        again = store.claim_webhook(now + 41, 30)
        assert again is not None and again.meta["webhook"]["attempts"] == [{"status_code": 500}]
        store.record_webhook_attempt("hooked", {"status_code": 204}, "delivered", None)
        assert store.claim_webhook(now + 10_000, 30) is None
        done = store.get_job("hooked")
        assert done is not None and done.meta["webhook"]["state"] == "delivered"
        assert [a["status_code"] for a in done.meta["webhook"]["attempts"]] == [500, 204]
        assert done.artifact == ARTIFACT, "recording attempts leaves the rest of the job alone"

    def test_webhook_secrets_are_kept_per_key(self, store: JobStore) -> None:
        store.add_key(ApiKey("k1", "one", time.time(), webhook_secret="whsec_a"), "h1")
        key = store.get_key("k1")
        assert key is not None and key.webhook_secret == "whsec_a"
        assert store.set_webhook_secret("one", "whsec_b") == 1
        key = store.get_key("k1")
        assert key is not None and key.webhook_secret == "whsec_b"
        assert store.get_key("nope") is None

    # -- API keys ------------------------------------------------------------------------------

    def test_keys_are_stored_only_as_hashes(self, backend: Backend) -> None:
        store = backend.open()
        raw = "kin_secret_value_123"
        store.add_key(ApiKey("id1", "ci", time.time()), hash_key(raw))
        store.add_key(ApiKey("id2", "other", time.time() + 1), hash_key("kin_other"))
        found = store.find_key(hash_key(raw))
        assert found is not None and (found.id, found.name, found.revoked) == ("id1", "ci", False)
        assert store.find_key(hash_key("kin_unknown")) is None
        assert raw not in backend.raw_keys() and hash_key(raw) in backend.raw_keys()
        assert store.revoke_key("ci") == 1
        assert store.revoke_key("ci") == 0
        assert store.find_key(hash_key(raw)) is None
        assert store.has_key_hash(hash_key(raw))  # revoked keys stay known
        assert not store.has_key_hash(hash_key("kin_unknown"))
        assert [(k.id, k.revoked) for k in store.list_keys()] == [("id1", True), ("id2", False)]
        assert store.revoke_key("id2") == 1

    # -- SQL only: durability and migrations ---------------------------------------------------

    def test_jobs_survive_reopening_the_database(self, empty_url: Callable[[], str]) -> None:
        url = empty_url()
        migrate(url)
        first = open_store_url(url)
        add(first, "a")
        first.close()
        second = open_store_url(url)
        try:
            job = second.get_job("a")
            assert job and job.status is JobStatus.QUEUED and job.request.prompt == "p"
        finally:
            second.close()

    def test_queue_counts_follow_an_operators_own_sql(self, empty_url: Callable[[], str]) -> None:
        url = empty_url()
        migrate(url)
        store = open_store_url(url)
        try:
            for job_id in ("x", "y", "z"):
                add(store, job_id, owner="A")
            run_sql(url, "UPDATE jobs SET status = 'failed' WHERE id = 'x'")
            run_sql(url, "DELETE FROM jobs WHERE id = 'y'")
            assert (store.count_queued("A"), store.count_queued()) == (1, 1)
            run_sql(url, "UPDATE jobs SET status = 'queued' WHERE id = 'x'")
            assert store.count_queued("A") == 2
            run_sql(url, "TRUNCATE jobs" if url.startswith("postgresql") else "DELETE FROM jobs")
            assert store.count_queued() == 0
        finally:
            store.close()

    def test_a_fresh_database_is_missing_until_migrated(self, empty_url: Callable[[], str]) -> None:
        url = empty_url()
        assert schema_status(url) == "missing"
        with pytest.raises(SchemaNotCurrent, match="kinema db upgrade") as refused:
            open_store_url(url, auto_migrate=False, require_current=True)
        assert refused.value.status == "missing"
        migrate(url)
        assert schema_status(url) == "current"
        migrate(url)  # idempotent
        open_store_url(url, auto_migrate=False).close()

    def test_an_older_schema_is_refused_until_upgraded(self, empty_url: Callable[[], str]) -> None:
        url = empty_url()
        migrate(url, INITIAL_REVISION)
        assert head_revision() != INITIAL_REVISION
        assert schema_status(url) == "behind"
        with pytest.raises(SchemaNotCurrent, match="kinema db upgrade"):
            open_store_url(url, auto_migrate=False)
        store = open_store_url(url, auto_migrate=True)
        store.close()
        assert schema_status(url) == "current"

    def test_a_database_from_before_migrations_is_adopted(
        self, empty_url: Callable[[], str]
    ) -> None:
        url = empty_url()
        migrate(url, INITIAL_REVISION)
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE alembic_version"))
            conn.execute(
                jobs_table.insert().values(
                    id="old",
                    owner="o",
                    model=MODEL,
                    request={"model": MODEL, "prompt": "kept"},
                    status="queued",
                    progress=0.0,
                    created_at=time.time(),
                    attempts=0,
                    max_attempts=3,
                    cancel_requested=False,
                    meta={},
                )
            )
        engine.dispose()
        assert schema_status(url) == "behind"
        migrate(url)
        assert schema_status(url) == "current"
        store = open_store_url(url)
        try:
            job = store.get_job("old")
            assert job and job.request.prompt == "kept"
            assert store.count_queued("o") == store.count_queued() == 1, "counted on upgrade"
        finally:
            store.close()

    def test_upgrading_fills_the_stage_histograms_from_completed_jobs(
        self, empty_url: Callable[[], str]
    ) -> None:
        url = empty_url()
        migrate(url, "0002")
        engine = create_engine(url)
        with engine.begin() as conn:
            for index, (status, generate) in enumerate(
                [("completed", 0.4), ("completed", 700.0), ("failed", 1.0)]
            ):
                conn.execute(
                    jobs_table.insert().values(
                        id=f"old-{index}",
                        owner="o",
                        model=MODEL,
                        request={"model": MODEL, "prompt": "p"},
                        status=status,
                        progress=0.0,
                        created_at=time.time(),
                        attempts=1,
                        max_attempts=3,
                        cancel_requested=False,
                        meta={"timings": {"generate": generate}},
                    )
                )
        engine.dispose()
        migrate(url)
        store = open_store_url(url)
        try:
            [generate] = store.stage_histograms()
        finally:
            store.close()
        assert generate.counts[STAGE_BUCKETS.index(0.5)] == 1
        assert generate.counts[-1] == 1, "700 s is above every bound"
        assert generate.total_seconds == pytest.approx(700.4)

    def test_a_newer_schema_is_refused(self, empty_url: Callable[[], str]) -> None:
        url = empty_url()
        migrate(url)
        run_sql(url, "UPDATE alembic_version SET version_num = '9999_from_the_future'")
        assert schema_status(url) == "ahead"
        for auto_migrate in (False, True):
            with pytest.raises(SchemaNotCurrent, match="newer than this kinema") as refused:
                open_store_url(url, auto_migrate=auto_migrate)
            assert refused.value.status == "ahead"
        with pytest.raises(SchemaNotCurrent):
            migrate(url)

    def test_open_store_without_checks_then_migrate(self, empty_url: Callable[[], str]) -> None:
        url = empty_url()
        store = open_store_url(url, auto_migrate=False, require_current=False)
        try:
            assert isinstance(store, SqlJobStore)
            migrate(url)
            assert schema_status(url) == "current"
            add(store, "a")
            assert count_jobs(store) == 1
        finally:
            store.close()


def test_postgres_connections_that_died_while_idle_are_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_db, "POSTGRES_PING_AFTER_IDLE_SECONDS", 0.0)
    with fresh_database() as url:
        migrate(url)
        store = open_store_url(url)
        try:
            add(store, "a")
            assert store.get_job("a") is not None and store.count_queued() == 1
            conninfo = libpq_conninfo(make_url(url))
            with psycopg.connect(conninfo, autocommit=True) as admin:
                killed = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()
            assert killed and killed[0] >= 1, "the store's pooled connections were ended"
            job = store.get_job("a")
            assert job is not None and job.status is JobStatus.QUEUED
            add(store, "b")
            assert store.count_queued() == 2
        finally:
            store.close()


def test_the_log_shows_the_upgrades_run_not_alembic_naming_its_dialect(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server's log on every start: the migrations it ran, once; not two lines of alembic
    naming its dialect each time a process checks the schema."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with caplog.at_level("INFO", logger="alembic"):
        migrate(url)
        migrate(url)
        assert schema_status(url) == "current"
    messages = [record.getMessage() for record in caplog.records]
    upgrades = [message for message in messages if message.startswith("Running upgrade")]
    assert upgrades and len(upgrades) == len(set(upgrades))  # each ran once
    assert not [m for m in messages if m.startswith(("Context impl", "Will assume"))], messages
