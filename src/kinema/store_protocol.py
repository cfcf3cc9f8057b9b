"""The job store's contract: the interface the services need of a store, with its data and
errors. kinema.store implements it (SQLite and PostgreSQL); the services, the
API and the workers depend on this module, never on kinema.store itself."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from kinema.domain import ApiKey, Job, Lease, VideoArtifact
from kinema.errors import KinemaError

SchemaStatus = Literal["current", "missing", "behind", "ahead"]
WebhookState = Literal["pending", "delivered", "failed"]

CANCELED_NAME = "Canceled"
CANCELED_MESSAGE = "the generation was canceled"
WORKER_LOST_NAME = "WorkerLost"
WORKER_LOST_MESSAGE = "the worker running this job stopped responding too many times"


class SchemaNotCurrent(KinemaError):
    """The database's schema is not the one this kinema needs (missing, older or newer)."""

    def __init__(self, message: str, status: SchemaStatus) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class StoreStats:
    """A snapshot for metrics: queue depth and running jobs per model, and jobs per status."""

    queued: dict[str, int] = field(default_factory=dict)  # model → queued jobs
    by_status: dict[str, int] = field(default_factory=dict)  # every JobStatus value → jobs, 0 too
    running: dict[str, int] = field(default_factory=dict)  # model → running jobs


# Upper bounds (seconds) of the stage-duration histogram's buckets; one more bucket holds the rest.
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600)


def stage_bucket(seconds: float) -> int:
    """The bucket a duration counts in: the first whose bound is ≥ it (len(STAGE_BUCKETS): none)."""
    return bisect_left(STAGE_BUCKETS, seconds)


def stage_samples(timings: object) -> list[tuple[str, float]]:
    """(stage, seconds) of a completed job's `meta["timings"]`, numbers only."""
    if not isinstance(timings, Mapping):
        return []
    return [
        (str(stage), float(seconds))
        for stage, seconds in timings.items()
        if isinstance(seconds, int | float) and not isinstance(seconds, bool)
    ]


@dataclass(frozen=True)
class StageHistogram:
    """Durations of one stage of one model over every completed job, kept up to date on each
    completion so that reading them costs the same at any number of jobs."""

    model: str
    stage: str
    counts: tuple[int, ...]  # per bucket (not cumulative), len(STAGE_BUCKETS) + 1
    total_seconds: float


class JobStore(Protocol):
    # Jobs, seen from the API.
    def add_job(self, job: Job) -> None: ...
    def get_job(self, job_id: str) -> Job | None: ...
    def queue_position(self, job: Job) -> int: ...
    def count_queued(self, owner: str | None = None) -> int:
        """Queued jobs of one owner (API key id), or of everyone."""
        ...

    def queued_counts(self, owner: str) -> tuple[int, int]:
        """Queued jobs of one owner and of everyone, read together (the checks of a create)."""
        ...

    def list_jobs(
        self, owner: str | None, *, after: str | None = None, limit: int = 20, newest_first: bool
    ) -> list[Job]:
        """An owner's jobs (everyone's with None) in submission order or its reverse, starting
        after the job `after` (which the caller checked exists); deleted jobs are left out."""
        ...

    def delete_job(self, job_id: str) -> Job | None:
        """Hide a job from every read; a queued one is canceled, a running one asked to stop (its
        worker's `complete` then raises LeaseLost). Returns the job as it was, None if unknown."""
        ...

    def purge_jobs(self, finished_before: float, limit: int = 500) -> list[Job]:
        """Remove for good up to `limit` ended jobs that finished before `finished_before` or were
        deleted, except those with a webhook still to deliver; returns what was removed (so the
        caller removes their files). Concurrent purgers never return the same job twice."""
        ...

    def request_cancel(self, job_id: str) -> Job | None:
        """Cancel a job: a queued one ends `canceled` at once; a running one gets
        `cancel_requested` (its worker stops at the next step and calls `mark_canceled`); a
        finished one is left as it is. Returns the job after the change, None if unknown."""
        ...

    # Jobs, seen from a worker. Every call that takes a lease raises LeaseLost once the lease is
    # no longer current, so a job is finished by exactly one worker.
    def claim(self, models: Sequence[str], worker_id: str, lease_seconds: float) -> Lease | None:
        """Lease the next job for one of `models`, fairly across owners: the owner with the
        fewest running jobs goes first (ties: the owner whose oldest queued job is oldest), and
        gets its oldest queued job. Expired leases are requeued (or failed, out of attempts)."""
        ...

    def wait_for_work(self, models: Sequence[str], timeout: float) -> None:
        """Block until work for one of `models` may have arrived, or `timeout` seconds passed.
        Spurious returns are allowed: callers claim, and wait again when there was nothing."""
        ...

    def heartbeat(self, lease: Lease, lease_seconds: float) -> Lease: ...
    def report_progress(self, lease: Lease, progress: float, stage: str) -> bool: ...
    def complete(self, lease: Lease, artifact: VideoArtifact, meta: dict[str, Any]) -> None: ...
    def fail(self, lease: Lease, name: str, message: str, meta: dict[str, Any]) -> None: ...
    def mark_canceled(self, lease: Lease) -> None: ...
    def release(self, lease: Lease) -> None: ...

    # Webhooks: an outbox of final jobs with a callback URL, claimed like jobs.
    def claim_webhook(self, now: float, hold_seconds: float) -> Job | None:
        """A finished job whose webhook is pending and due, held for `hold_seconds` so that no
        other deliverer takes it meanwhile."""
        ...

    def record_webhook_attempt(
        self, job_id: str, attempt: dict[str, Any], state: WebhookState, next_at: float | None
    ) -> None:
        """Append an attempt to meta["webhook"]["attempts"] and set the delivery's state (and,
        when still pending, when to try again)."""
        ...

    # Workers: liveness for readiness checks and metrics.
    def register_worker(self, worker_id: str, models: Sequence[str]) -> None: ...
    def worker_seen(self, worker_id: str) -> None: ...
    def forget_worker(self, worker_id: str) -> None: ...
    def live_workers(self, max_age_seconds: float) -> dict[str, int]:
        """Served model → number of workers seen within `max_age_seconds`."""
        ...

    def stats(self) -> StoreStats: ...
    def stage_histograms(self) -> list[StageHistogram]:
        """Per (model, stage): how long it took in the completed jobs, sorted by model and stage."""
        ...

    # API keys (only hashes are stored).
    def add_key(self, key: ApiKey, key_hash: str) -> None: ...
    def has_key_hash(self, key_hash: str) -> bool: ...
    def find_key(self, key_hash: str) -> ApiKey | None: ...
    def get_key(self, key_id: str) -> ApiKey | None:
        """A key by id, revoked or not."""
        ...

    def set_webhook_secret(self, id_or_name: str, secret: str) -> int: ...
    def list_keys(self) -> list[ApiKey]: ...
    def revoke_key(self, id_or_name: str) -> int: ...

    def close(self) -> None: ...
