"""The use cases: submit, look up, authenticate, manage keys. The one place that knows the rules."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

from kinema.domain import ApiKey, GenerationRequest, Job, JobStatus
from kinema.engine.registry import ServedModels
from kinema.errors import FieldError, NotFound, Unauthorized, ValidationFailed
from kinema.storage.base import ArtifactStore
from kinema.store.base import JobStore

MAX_SEED = 2**32 - 1


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def new_raw_key() -> str:
    return f"kin_{secrets.token_urlsafe(32)}"


def new_job_id() -> str:
    return secrets.token_urlsafe(24)


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
        self, store: JobStore, storage: ArtifactStore, served: ServedModels, url_ttl: int
    ) -> None:
        self.store = store
        self._storage = storage
        self.served = served
        self._url_ttl = url_ttl

    def submit(self, owner: ApiKey, request: GenerationRequest) -> Job:
        model = self.served.resolve(request.model)
        if model is None:
            raise ValidationFailed(
                "Body validation error: unknown model",
                [FieldError("model", f"must be one of: {', '.join(self.served.all_ids())}")],
            )
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

    def get(self, owner: ApiKey, job_id: str, base_url: str) -> JobView:
        job = self.store.get_job(job_id)
        if job is None or job.owner != owner.id:
            raise NotFound(f"generation {job_id!r} not found")
        position = self.store.queue_position(job) if job.status is JobStatus.QUEUED else None
        url = None
        if job.status is JobStatus.COMPLETED and job.artifact is not None:
            url = self._storage.url(job.artifact.key, base_url, self._url_ttl)
        return JobView(job, position, url)
