"""An in-memory JobStore with the SQL store's semantics, for unit tests of the service and worker.

Thread-safe: one lock around everything; idle workers wait on a condition variable.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kinema.domain import ApiKey, Job, JobStatus, Lease, VideoArtifact
from kinema.errors import LeaseLost
from kinema.store.base import (
    CANCELED_MESSAGE,
    CANCELED_NAME,
    STAGE_BUCKETS,
    WORKER_LOST_MESSAGE,
    WORKER_LOST_NAME,
    StageHistogram,
    StoreStats,
    WebhookState,
    stage_bucket,
    stage_samples,
)

QUEUED, RUNNING = JobStatus.QUEUED, JobStatus.RUNNING
FINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)


@dataclass
class _Row:
    seq: int
    job: Job
    max_attempts: int
    lease_token: str | None = None
    lease_worker: str | None = None
    lease_expires_at: float | None = None
    deleted_at: float | None = None
    webhook_state: WebhookState | None = None
    webhook_next_at: float | None = None

    @property
    def status(self) -> JobStatus:
        return self.job.status

    def set(self, **changes: Any) -> None:
        self.job = dataclasses.replace(self.job, **changes)

    def expired(self, now: float) -> bool:
        return (
            self.status is RUNNING
            and self.lease_expires_at is not None
            and self.lease_expires_at < now
        )


@dataclass
class _Key:
    key: ApiKey
    key_hash: str
    revoked_at: float | None = None


@dataclass
class _Worker:
    models: list[str]
    started_at: float
    last_seen: float


def _copy(job: Job) -> Job:
    return dataclasses.replace(job, meta=dict(job.meta))


class MemoryJobStore:
    def __init__(self, max_attempts: int = 3) -> None:
        self._max_attempts = max_attempts
        self._lock = threading.Condition()
        self._rows: dict[str, _Row] = {}
        self._keys: dict[str, _Key] = {}
        self._workers: dict[str, _Worker] = {}
        self._stage_stats: dict[tuple[str, str], tuple[list[int], float]] = {}
        self._seq = 0
        self._wakeups = 0

    def close(self) -> None:
        pass

    # -- jobs, API side ------------------------------------------------------------------------

    def add_job(self, job: Job) -> None:
        with self._lock:
            if job.id in self._rows:
                raise ValueError(f"job {job.id} exists")
            self._seq += 1
            row = _Row(self._seq, _copy(job), self._max_attempts)
            if job.callback_url:
                row.webhook_state, row.webhook_next_at = "pending", job.created_at
            self._rows[job.id] = row
            self._wake()

    def get_job(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._rows.get(job_id)
            return _copy(row.job) if row and row.deleted_at is None else None

    def list_jobs(
        self, owner: str | None, *, after: str | None = None, limit: int = 20, newest_first: bool
    ) -> list[Job]:
        with self._lock:
            rows = sorted(self._rows.values(), key=lambda row: row.seq, reverse=newest_first)
            cursor = self._rows[after].seq if after in self._rows else None
            chosen = [
                row
                for row in rows
                if row.deleted_at is None
                and (owner is None or row.job.owner == owner)
                and (cursor is None or (row.seq < cursor if newest_first else row.seq > cursor))
            ]
            return [_copy(row.job) for row in chosen[:limit]]

    def delete_job(self, job_id: str) -> Job | None:
        with self._lock:
            job = self.request_cancel(job_id)
            row = self._rows.get(job_id)
            if row is not None and row.deleted_at is None:
                row.deleted_at = time.time()
            return job

    def queue_position(self, job: Job) -> int:
        with self._lock:
            mine = self._rows.get(job.id)
            if mine is None:
                return 0
            return sum(
                1
                for row in self._rows.values()
                if row.status is QUEUED
                and row.job.request.model == job.request.model
                and row.seq < mine.seq
            )

    def count_jobs(self) -> int:
        with self._lock:
            return len(self._rows)

    def count_queued(self, owner: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for row in self._rows.values()
                if row.status is QUEUED and (owner is None or row.job.owner == owner)
            )

    def queued_counts(self, owner: str) -> tuple[int, int]:
        with self._lock:
            return self.count_queued(owner), self.count_queued()

    def purge_jobs(self, finished_before: float, limit: int = 500) -> list[Job]:
        with self._lock:
            chosen = [
                row
                for row in self._rows.values()
                if row.status in FINAL
                and row.webhook_state != "pending"
                and (
                    row.deleted_at is not None
                    or (row.job.completed_at is not None and row.job.completed_at < finished_before)
                )
            ][:limit]
            for row in chosen:
                del self._rows[row.job.id]
            return [_copy(row.job) for row in chosen]

    def request_cancel(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._rows.get(job_id)
            if row is None:
                return None
            if row.status is QUEUED:
                row.set(
                    status=JobStatus.CANCELED,
                    completed_at=time.time(),
                    stage=JobStatus.CANCELED.value,
                    error_name=CANCELED_NAME,
                    error_message=CANCELED_MESSAGE,
                    cancel_requested=True,
                )
            elif row.status is RUNNING:
                row.set(cancel_requested=True)
            return _copy(row.job)

    def stats(self) -> StoreStats:
        by_status = dict.fromkeys((s.value for s in JobStatus), 0)
        queued: dict[str, int] = {}
        running: dict[str, int] = {}
        with self._lock:
            for row in self._rows.values():
                model = row.job.request.model
                by_status[row.status.value] += 1
                if row.status is QUEUED:
                    queued[model] = queued.get(model, 0) + 1
                elif row.status is RUNNING:
                    running[model] = running.get(model, 0) + 1
        return StoreStats(queued=queued, by_status=by_status, running=running)

    def stage_histograms(self) -> list[StageHistogram]:
        with self._lock:
            stats = sorted(self._stage_stats.items())
        return [
            StageHistogram(model, stage, tuple(counts), total)
            for (model, stage), (counts, total) in stats
        ]

    def _count_stages(self, model: str, timings: object) -> None:
        for stage, seconds in stage_samples(timings):
            counts, total = self._stage_stats.get(
                (model, stage), ([0] * (len(STAGE_BUCKETS) + 1), 0.0)
            )
            counts[stage_bucket(seconds)] += 1
            self._stage_stats[(model, stage)] = (counts, total + seconds)

    # -- jobs, worker side ---------------------------------------------------------------------

    def claim(self, models: Sequence[str], worker_id: str, lease_seconds: float) -> Lease | None:
        now = time.time()
        with self._lock:
            self._requeue_expired(now)
            row = self._fair_pick(set(models))
            if row is None:
                return None
            token = uuid.uuid4().hex
            row.lease_token, row.lease_worker = token, worker_id
            row.lease_expires_at = now + lease_seconds
            row.set(
                status=RUNNING,
                attempts=row.job.attempts + 1,
                started_at=row.job.started_at or now,
                stage="starting",
            )
            return Lease(_copy(row.job), token, worker_id, row.lease_expires_at)

    def _fair_pick(self, models: set[str]) -> _Row | None:
        running: dict[str, int] = {}
        oldest: dict[str, _Row] = {}
        for row in self._rows.values():
            owner = row.job.owner
            if row.status is RUNNING:
                running[owner] = running.get(owner, 0) + 1
            elif row.status is QUEUED and row.job.request.model in models:
                oldest.setdefault(owner, row)  # rows are kept in submission (seq) order
        if not oldest:
            return None
        return min(oldest.values(), key=lambda row: (running.get(row.job.owner, 0), row.seq))

    def _requeue_expired(self, now: float) -> None:
        ended = {"completed_at": now}
        for row in self._rows.values():
            if not row.expired(now):
                continue
            row.lease_token = row.lease_expires_at = None
            if row.job.cancel_requested:
                row.set(
                    status=JobStatus.CANCELED,
                    stage=JobStatus.CANCELED.value,
                    error_name=CANCELED_NAME,
                    error_message=CANCELED_MESSAGE,
                    **ended,
                )
            elif row.job.attempts >= row.max_attempts:
                row.set(
                    status=JobStatus.FAILED,
                    stage=JobStatus.FAILED.value,
                    error_name=WORKER_LOST_NAME,
                    error_message=row.job.error_message or WORKER_LOST_MESSAGE,
                    **ended,
                )
            else:
                row.set(status=QUEUED, progress=0.0, stage=None)
                self._wake()

    def _leased(self, lease: Lease) -> _Row:
        row = self._rows.get(lease.job.id)
        if row is None or row.status is not RUNNING or row.lease_token != lease.token:
            raise LeaseLost(f"job {lease.job.id}: lease {lease.token} is no longer current")
        return row

    def heartbeat(self, lease: Lease, lease_seconds: float) -> Lease:
        expires_at = time.time() + lease_seconds
        with self._lock:
            self._leased(lease).lease_expires_at = expires_at
        return Lease(lease.job, lease.token, lease.worker_id, expires_at)

    def report_progress(self, lease: Lease, progress: float, stage: str) -> bool:
        with self._lock:
            row = self._leased(lease)
            row.set(progress=progress, stage=stage)
            return row.job.cancel_requested

    def complete(self, lease: Lease, artifact: VideoArtifact, meta: dict[str, Any]) -> None:
        with self._lock:
            if self._leased(lease).deleted_at is not None:  # deleted while it ran
                self.mark_canceled(lease)
                raise LeaseLost(f"job {lease.job.id} was deleted")
            self._finish(lease, JobStatus.COMPLETED, artifact=artifact, meta=meta, progress=100.0)
            self._count_stages(lease.job.request.model, meta.get("timings"))

    def fail(self, lease: Lease, name: str, message: str, meta: dict[str, Any]) -> None:
        self._finish(lease, JobStatus.FAILED, error_name=name, error_message=message, meta=meta)

    def mark_canceled(self, lease: Lease) -> None:
        self._finish(
            lease, JobStatus.CANCELED, error_name=CANCELED_NAME, error_message=CANCELED_MESSAGE
        )

    def _finish(self, lease: Lease, status: JobStatus, **changes: Any) -> None:
        with self._lock:
            row = self._leased(lease)
            if "meta" in changes:
                changes["meta"] = {**row.job.meta, **changes["meta"]}
            row.lease_token = row.lease_expires_at = None
            row.set(status=status, completed_at=time.time(), stage=status.value, **changes)

    def release(self, lease: Lease) -> None:
        with self._lock:
            row = self._leased(lease)
            row.lease_token = row.lease_expires_at = None
            row.set(status=QUEUED, attempts=row.job.attempts - 1, progress=0.0, stage=None)
            self._wake()

    def claim_webhook(self, now: float, hold_seconds: float) -> Job | None:
        with self._lock:
            due = [
                row
                for row in self._rows.values()
                if row.webhook_state == "pending"
                and row.webhook_next_at is not None
                and row.webhook_next_at <= now
                and row.status in FINAL
            ]
            if not due:
                return None
            row = min(due, key=lambda row: row.webhook_next_at or 0.0)
            row.webhook_next_at = now + hold_seconds
            return _copy(row.job)

    def record_webhook_attempt(
        self, job_id: str, attempt: dict[str, Any], state: WebhookState, next_at: float | None
    ) -> None:
        with self._lock:
            row = self._rows[job_id]
            webhook = dict(row.job.meta.get("webhook") or {})
            webhook["attempts"] = [*webhook.get("attempts", []), attempt]
            webhook["state"] = state
            row.set(meta={**row.job.meta, "webhook": webhook})
            row.webhook_state, row.webhook_next_at = state, next_at

    def wait_for_work(self, models: Sequence[str], timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        served = set(models)
        with self._lock:
            expiries = [
                row.lease_expires_at
                for row in self._rows.values()
                if row.status is RUNNING and row.lease_expires_at is not None
            ]
            if expiries:  # an expired lease needs a claim to requeue it: wake up for it
                next_expiry = min(expiries) - time.time() + 0.01
                deadline = min(deadline, time.monotonic() + max(next_expiry, 0.01))
            while (remaining := deadline - time.monotonic()) > 0:
                seen = self._wakeups
                self._lock.wait(remaining)
                if self._wakeups != seen and self._has_queued(served):
                    return

    def _has_queued(self, models: set[str]) -> bool:
        return any(
            row.status is QUEUED and row.job.request.model in models for row in self._rows.values()
        )

    def _wake(self) -> None:
        self._wakeups += 1
        self._lock.notify_all()

    # -- workers -------------------------------------------------------------------------------

    def register_worker(self, worker_id: str, models: Sequence[str]) -> None:
        now = time.time()
        with self._lock:
            self._workers[worker_id] = _Worker(list(models), now, now)

    def worker_seen(self, worker_id: str) -> None:
        with self._lock:
            if worker_id in self._workers:
                self._workers[worker_id].last_seen = time.time()

    def forget_worker(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def live_workers(self, max_age_seconds: float) -> dict[str, int]:
        since = time.time() - max_age_seconds
        counts: dict[str, int] = {}
        with self._lock:
            for worker in self._workers.values():
                if worker.last_seen >= since:
                    for model in set(worker.models):
                        counts[model] = counts.get(model, 0) + 1
        return counts

    # -- API keys ------------------------------------------------------------------------------

    def add_key(self, key: ApiKey, key_hash: str) -> None:
        with self._lock:
            if key.id in self._keys or self.has_key_hash(key_hash):
                raise ValueError(f"key {key.id} exists")
            self._keys[key.id] = _Key(dataclasses.replace(key, revoked=False), key_hash)

    def has_key_hash(self, key_hash: str) -> bool:
        with self._lock:
            return any(entry.key_hash == key_hash for entry in self._keys.values())

    def find_key(self, key_hash: str) -> ApiKey | None:
        with self._lock:
            for entry in self._keys.values():
                if entry.key_hash == key_hash and entry.revoked_at is None:
                    return entry.key
        return None

    def get_key(self, key_id: str) -> ApiKey | None:
        with self._lock:
            entry = self._keys.get(key_id)
            if entry is None:
                return None
            return dataclasses.replace(entry.key, revoked=entry.revoked_at is not None)

    def set_webhook_secret(self, id_or_name: str, secret: str) -> int:
        changed = 0
        with self._lock:
            for entry in self._keys.values():
                if id_or_name in (entry.key.id, entry.key.name):
                    entry.key = dataclasses.replace(entry.key, webhook_secret=secret)
                    changed += 1
        return changed

    def list_keys(self) -> list[ApiKey]:
        with self._lock:
            entries = sorted(self._keys.values(), key=lambda entry: entry.key.created_at)
            return [
                dataclasses.replace(entry.key, revoked=entry.revoked_at is not None)
                for entry in entries
            ]

    def revoke_key(self, id_or_name: str) -> int:
        revoked = 0
        with self._lock:
            for entry in self._keys.values():
                matches = id_or_name in (entry.key.id, entry.key.name)
                if matches and entry.revoked_at is None:
                    entry.revoked_at = time.time()
                    revoked += 1
        return revoked
