"""The use cases: submit, look up, authenticate, manage keys. The one place that knows the rules."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from kinema.domain import ApiKey, GenerationRequest, Job, JobStatus
from kinema.engine.registry import ServedModels
from kinema.errors import FieldError, NotFound, QueueFull, Unauthorized, ValidationFailed
from kinema.storage.base import ArtifactStore
from kinema.store.base import JobStore

MAX_SEED = 2**32 - 1


def _probe(check: Callable[[], object]) -> str:
    try:
        check()
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}: {exc}"
    return "ok"


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def new_raw_key() -> str:
    return f"kin_{secrets.token_urlsafe(32)}"


def new_job_id() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class QueueLimits:
    per_key: int = 100
    total: int = 10_000
    retry_after: int = 10


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, str]  # name → "ok" or what is wrong

    @property
    def ready(self) -> bool:
        return all(result == "ok" for result in self.checks.values())


@dataclass(frozen=True)
class JobView:
    """A job as its owner sees it, with what is derived at read time."""

    job: Job
    queue_position: int | None
    video_url: str | None


class KeyService:
    def __init__(self, store: JobStore) -> None:
        self._store = store

    def authenticate(self, raw_key: str | None) -> ApiKey:
        key = self._store.find_key(hash_key(raw_key)) if raw_key else None
        if key is None:
            raise Unauthorized("a valid API key is required: send 'Authorization: Bearer <key>'")
        return key

    def create(self, name: str, raw_key: str | None = None) -> tuple[ApiKey, str]:
        raw_key = raw_key or new_raw_key()
        key = ApiKey(id=secrets.token_hex(8), name=name, created_at=time.time())
        self._store.add_key(key, hash_key(raw_key))
        return key, raw_key

    def list(self) -> list[ApiKey]:
        return self._store.list_keys()

    def revoke(self, id_or_name: str) -> int:
        return self._store.revoke_key(id_or_name)

    def seed(self, raw_keys: Iterable[str]) -> list[ApiKey]:
        """Register keys given by the deployment, once each; a revoked key stays revoked."""
        added = []
        for raw_key in filter(None, raw_keys):
            key_hash = hash_key(raw_key)
            if not self._store.has_key_hash(key_hash):
                added.append(self.create(f"seeded-{key_hash[:8]}", raw_key)[0])
        return added

    def ensure_one(self) -> str | None:
        """If no usable key exists, create one and return it (to be shown once)."""
        if any(not key.revoked for key in self._store.list_keys()):
            return None
        return self.create("default")[1]


class JobService:
    def __init__(
        self,
        store: JobStore,
        storage: ArtifactStore,
        served: ServedModels,
        url_ttl: int,
        limits: QueueLimits | None = None,
    ) -> None:
        self.store = store
        self._storage = storage
        self.served = served
        self._url_ttl = url_ttl
        self._limits = limits or QueueLimits()

    def submit(self, owner: ApiKey, request: GenerationRequest) -> Job:
        model = self.served.resolve(request.model)
        if model is None:
            raise ValidationFailed(
                "Body validation error: unknown model",
                [FieldError("model", f"must be one of: {', '.join(self.served.all_ids())}")],
            )
        self._check_capacity(owner)
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
        job = Job(
            id=new_job_id(),
            owner=owner.id,
            request=replace(request, model=model, seed=seed),
            status=JobStatus.QUEUED,
            created_at=time.time(),
            meta={"requested_model": request.model},
        )
        self.store.add_job(job)
        return job

    def close(self) -> None:
        self.store.close()

    def _check_capacity(self, owner: ApiKey) -> None:
        """Back-pressure: a bounded queue per key and in all (checked, then inserted: a burst of
        concurrent creates can overshoot by the number of API threads, never more)."""
        limits = self._limits
        if self.store.count_queued(owner.id) >= limits.per_key:
            message = f"this key already has {limits.per_key} generations queued; retry later"
            raise QueueFull(message, limits.retry_after)
        if self.store.count_queued() >= limits.total:
            raise QueueFull("the server's queue is full; retry later", limits.retry_after)

    def _owned(self, owner: ApiKey, job_id: str) -> Job:
        job = self.store.get_job(job_id)
        if job is None or job.owner != owner.id:
            raise NotFound(f"generation {job_id!r} not found")
        return job

    def cancel(self, owner: ApiKey, job_id: str, base_url: str) -> JobView:
        """A queued job ends at once; a running one stops at its next denoising step."""
        self.store.request_cancel(self._owned(owner, job_id).id)
        return self.get(owner, job_id, base_url)

    def readiness(self, liveness_seconds: float) -> Readiness:
        live: dict[str, int] = {}
        checks = {
            "database": _probe(lambda: live.update(self.store.live_workers(liveness_seconds))),
            "storage": _probe(lambda: self._storage.exists("readyz/probe")),
        }
        for model in self.served.served:
            checks[f"workers:{model}"] = "ok" if live.get(model) else "no live worker"
        return Readiness(checks)

    def get(self, owner: ApiKey, job_id: str, base_url: str) -> JobView:
        job = self._owned(owner, job_id)
        position = self.store.queue_position(job) if job.status is JobStatus.QUEUED else None
        url = None
        if job.status is JobStatus.COMPLETED and job.artifact is not None:
            url = self._storage.url(job.artifact.key, base_url, self._url_ttl)
        return JobView(job, position, url)
