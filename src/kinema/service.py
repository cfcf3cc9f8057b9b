"""The use cases: submit, look up, authenticate, manage keys. The one place that knows the rules."""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from kinema.catalog.loras import lora_error
from kinema.catalog.plan import check_request, output_size
from kinema.catalog.registry import MODELS, ServedModels, canonical_id, get_spec
from kinema.config import Settings
from kinema.domain import ApiKey, Condition, GenerationRequest, Job, JobStatus
from kinema.errors import FieldError, NotFound, QueueFull, Unauthorized, ValidationFailed
from kinema.storage.base import ArtifactStore, remove_job_artifacts
from kinema.store_protocol import JobStore, StageHistogram, StoreStats, WebhookState
from kinema.webhooks import CallbackRefused, check_callback_url, new_secret

Variant = Literal["video", "thumbnail", "spritesheet"]

logger = logging.getLogger("kinema.service")

MAX_SEED = 2**32 - 1
MAX_ID_LENGTH = 64


def _probe(check: Callable[[], object]) -> str:
    try:
        check()
    except Exception as exc:
        logger.warning("readiness: %s", exc)
        return f"unreachable: {type(exc).__name__}"
    return "ok"


class WriteProbe:
    """Whether the artifact store takes a write (a small object, stored and removed), looked at
    no more often than every `ttl_seconds`: readiness is polled by every load balancer."""

    def __init__(
        self,
        storage: ArtifactStore,
        ttl_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._storage = storage
        self._ttl = ttl_seconds
        self._clock = clock
        self._checked_at: float | None = None
        self._result = "ok"

    def __call__(self) -> str:
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._ttl:
            self._result = self._write_and_remove()
            self._checked_at = now
        return self._result

    def _write_and_remove(self) -> str:
        key = f"readyz/{uuid.uuid4().hex}"
        staged = self._storage.staging_path(".probe")
        try:
            staged.write_bytes(b"kinema readiness probe\n")
            self._storage.put(key, staged)
            self._storage.delete(key)
        except Exception as exc:
            logger.warning("readiness: storage cannot be written: %s", exc)
            return f"not writable: {type(exc).__name__}"
        finally:
            with contextlib.suppress(OSError):
                staged.unlink(missing_ok=True)  # put consumed it, unless it failed
        return "ok"


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


KEY_CACHE_SECONDS = 1.0  # how long a key, once read, is trusted without reading it again
KEY_CACHE_SIZE = 10_000


class _RecentKeys:
    """The keys read from the store in the last KEY_CACHE_SECONDS, by hash. A revocation made
    elsewhere (another process, the CLI) takes effect within that time."""

    def __init__(
        self,
        seconds: float = KEY_CACHE_SECONDS,
        size: int = KEY_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seconds = seconds
        self._size = size
        self._clock = clock
        self._keys: dict[str, tuple[ApiKey, float]] = {}  # hash → (key, trusted until)
        self.generation = 0  # bumped by every clear: a read begun before it is not kept
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> ApiKey | None:
        found = self._keys.get(key_hash)
        return found[0] if found is not None and found[1] > self._clock() else None

    def put(self, key_hash: str, key: ApiKey, read_in_generation: int) -> None:
        """Keep a key read from the store, unless the cache was cleared since the read began (a
        revocation racing the read must not be undone by it)."""
        with self._lock:
            if read_in_generation != self.generation:
                return
            if len(self._keys) >= self._size:
                self._keys.clear()  # a bound, not an eviction policy: the next reads refill it
            self._keys[key_hash] = (key, self._clock() + self._seconds)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._keys.clear()


def new_raw_key() -> str:
    return f"kin_{secrets.token_urlsafe(32)}"


def new_job_id() -> str:
    return secrets.token_urlsafe(24)


def is_storable_id(job_id: str) -> bool:
    """Whether a job could have this id: PostgreSQL refuses NUL in text, so such an id is not
    looked up (it is unknown), and neither is one longer than the column."""
    return "\x00" not in job_id and len(job_id) <= MAX_ID_LENGTH


@dataclass(frozen=True)
class QueueLimits:
    per_key: int = 100
    total: int = 10_000
    retry_after: int = 10


@dataclass(frozen=True)
class WebhookPolicy:
    global_url: str | None = None  # used for jobs that name no callback_url of their own
    allow_private: bool = False  # let callbacks reach private/loopback hosts (tests, intranets)


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
    thumbnail_url: str | None = None
    expires_at: float | None = None  # when retention removes the job and its files
    input_images: tuple[InputImageView, ...] = ()  # the images it was given, as it stores them


@dataclass(frozen=True)
class InputImageView:
    """An image a job was given: the output frame it conditions (-1: the last) and a link."""

    frame: int
    url: str


@dataclass(frozen=True)
class JobPage:
    views: list[JobView]
    has_more: bool


class KeyService:
    def __init__(self, store: JobStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._recent = _RecentKeys(clock=clock)

    def authenticate(self, raw_key: str | None) -> ApiKey:
        key_hash = hash_key(raw_key) if raw_key else None
        key = self._recent.get(key_hash) if key_hash else None
        if key is None and key_hash:
            generation = self._recent.generation
            key = self._store.find_key(key_hash)
            if key is not None:
                self._recent.put(key_hash, key, generation)
        if key is None:
            raise Unauthorized("a valid API key is required: send 'Authorization: Bearer <key>'")
        return key

    def cached(self, raw_key: str | None) -> ApiKey | None:
        """`authenticate`'s answer where it needs no store read (the key was read within
        KEY_CACHE_SECONDS), None where it does."""
        return self._recent.get(hash_key(raw_key)) if raw_key else None

    def create(self, name: str, raw_key: str | None = None) -> tuple[ApiKey, str]:
        """A new key (and its webhook signing secret); the raw key is returned only here."""
        raw_key = raw_key or new_raw_key()
        key = ApiKey(
            id=secrets.token_hex(8), name=name, created_at=time.time(), webhook_secret=new_secret()
        )
        self._store.add_key(key, hash_key(raw_key))
        return key, raw_key

    def webhook_secret(self, key_id: str) -> str | None:
        """The key's webhook signing secret, made now for keys from before webhooks existed."""
        key = self._store.get_key(key_id)
        if key is None:
            return None
        if key.webhook_secret is None:
            return self.rotate_webhook_secret(key.id)
        return key.webhook_secret

    def rotate_webhook_secret(self, id_or_name: str) -> str | None:
        secret = new_secret()
        return secret if self._store.set_webhook_secret(id_or_name, secret) else None

    def list(self) -> list[ApiKey]:
        return self._store.list_keys()

    def revoke(self, id_or_name: str) -> int:
        revoked = self._store.revoke_key(id_or_name)
        self._recent.clear()  # revoked here: refused at once, not KEY_CACHE_SECONDS later
        return revoked

    def seed(self, raw_keys: Iterable[str]) -> builtins.list[ApiKey]:
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


@dataclass(frozen=True)
class Operator:
    """Whoever holds the database itself (`kinema jobs` without --server): every key's jobs, or
    only those of the key with id `only`. An API key sees its own jobs alone."""

    only: str | None = None


Reader = ApiKey | Operator  # whose jobs a read, cancel or delete may reach


def _reaches(reader: Reader, job: Job) -> bool:
    if isinstance(reader, Operator):
        return reader.only is None or job.owner == reader.only
    return job.owner == reader.id


def _owner_filter(reader: Reader) -> str | None:
    return reader.only if isinstance(reader, Operator) else reader.id


REMIX_STRENGTH = 0.6  # how much of its source a remix keeps (1: every frame as it was)
EXTENSION_OVERLAP_FRAMES = 17  # of the source's end an extension follows on from: 3 latent frames


@dataclass(frozen=True)
class InputFile:
    """An input of a new job (an image, or a clip's frames) and where it acts on the output."""

    data: bytes
    suffix: str  # the stored file's extension: ".png", ".jpg", ".webp", ".mp4"
    frame: int = 0  # the output frame it lands on; -1: the last
    strength: float = 1.0
    kind: str = "image"

    def condition(self, key_stem: str) -> Condition:
        return Condition(f"{key_stem}{self.suffix}", self.frame, self.strength, self.kind)


class JobService:
    def __init__(
        self,
        store: JobStore,
        storage: ArtifactStore,
        served: ServedModels,
        url_ttl: int,
        limits: QueueLimits | None = None,
        webhooks: WebhookPolicy | None = None,
        retention_seconds: float | None = None,
        max_output_pixels: int | None = None,
        lora_dir: Path | None = None,
    ) -> None:
        self._store = store
        self._max_output_pixels = max_output_pixels
        self._lora_dir = lora_dir
        self._storage = storage
        self.served = served
        self._url_ttl = url_ttl
        self._limits = limits or QueueLimits()
        self.webhooks = webhooks or WebhookPolicy()
        self._retention = retention_seconds
        self.storage_probe = WriteProbe(storage)

    def submit(
        self,
        owner: ApiKey,
        request: GenerationRequest,
        callback_url: str | None = None,
        inputs: Sequence[InputFile] = (),
        origin: Mapping[str, object] | None = None,
    ) -> Job:
        """Queue a job; `inputs` are stored with it and become the request's conditions;
        `origin` (the job it remixes or extends) is recorded in its meta."""
        model = self.served.resolve(request.model)
        if model is None:
            raise ValidationFailed("Body validation error: model", [self._unserved(request.model)])
        job_id = new_job_id()
        stored = tuple(item.condition(f"{job_id}/input-{i}") for i, item in enumerate(inputs))
        conditions = (*request.conditions, *stored)
        planned = self._planned(replace(request, model=model, conditions=conditions))
        callback_url = self._checked_callback(callback_url) or self.webhooks.global_url
        self._check_capacity(owner)
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
        meta: dict[str, object] = {"requested_model": request.model, **(origin or {})}
        if callback_url:
            meta["webhook"] = {"url": callback_url, "state": "pending", "attempts": []}
        job = Job(
            id=job_id,
            owner=owner.id,
            request=replace(planned, seed=seed),
            status=JobStatus.QUEUED,
            created_at=time.time(),
            meta=meta,
            callback_url=callback_url,
        )
        self._store_inputs(inputs, stored)
        try:
            self._store.add_job(job)
        except BaseException:
            remove_job_artifacts(self._storage, job_id)
            raise
        return job

    def remix(
        self, owner: ApiKey, source_id: str, prompt: str, callback_url: str | None = None
    ) -> Job:
        """A new clip from a completed one and a new prompt: its size, length, rate and seed,
        denoised from the source's own frames (strength REMIX_STRENGTH), so its motion and
        layout carry over as far as the model lets the prompt change them."""
        source, key = self._completed_clip(owner, source_id)
        video = Condition(key=key, kind="video", strength=REMIX_STRENGTH)
        request = replace(source.request, prompt=prompt, conditions=(video,), continues=None)
        return self.submit(owner, request, callback_url, origin={"remixed_from": source.id})

    def extend(
        self,
        owner: ApiKey,
        source_id: str,
        prompt: str,
        seconds: float,
        callback_url: str | None = None,
    ) -> Job:
        """A completed clip and `seconds` more that follow on from its last frames, as one
        clip (sound included)."""
        source, key = self._completed_clip(owner, source_id)
        tail = Condition(key=key, kind="video", clip_frames=EXTENSION_OVERLAP_FRAMES)
        request = replace(
            source.request,
            prompt=prompt,
            duration=seconds,
            seed=None,
            conditions=(tail,),
            continues=key,
        )
        # The length asked for, as `seconds` shows it (the clip itself is a frame longer or so).
        source_seconds = source.request.duration + source.meta.get("continued_seconds", 0)
        origin = {"extended_from": source.id, "continued_seconds": source_seconds}
        return self.submit(owner, request, callback_url, origin=origin)

    def _completed_clip(self, owner: Reader, job_id: str) -> tuple[Job, str]:
        job = self.owned(owner, job_id)
        if job.status is not JobStatus.COMPLETED or job.artifact is None:
            message = f"generation {job_id!r} is not completed (status: {job.status})"
            raise ValidationFailed(message, [FieldError("video", message)])
        return job, job.artifact.key

    def _store_inputs(self, inputs: Sequence[InputFile], conditions: Sequence[Condition]) -> None:
        for item, condition in zip(inputs, conditions, strict=True):
            staged = self._storage.staging_path(item.suffix)
            staged.write_bytes(item.data)
            self._storage.put(condition.key, staged)

    def _unserved(self, model: str) -> FieldError:
        served = ", ".join(self.served.served)
        if canonical_id(model) in MODELS:
            return FieldError(
                "model", f"{model!r} is not served here; served: {served} (or a hosted model id)"
            )
        return FieldError("model", f"must be one of: {', '.join(self.served.all_ids())}")

    def _planned(self, request: GenerationRequest) -> GenerationRequest:
        """The request as its model will make it (its size explicit), or a ValidationFailed
        naming the request's fields if the model (or this deployment) cannot."""
        spec = get_spec(request.model)
        check_request(request, spec, self._max_output_pixels)
        if (error := lora_error(request.loras, spec, self._lora_dir)) is not None:
            raise ValidationFailed(f"Body validation error: loras: {error.message}", [error])
        width, height = output_size(request, spec)
        audio = spec.has_audio and request.generate_audio is not False
        return replace(request, width=width, height=height, generate_audio=audio)

    def _checked_callback(self, url: str | None) -> str | None:
        if not url:
            return None
        try:
            return check_callback_url(url, self.webhooks.allow_private)
        except CallbackRefused as exc:
            message = f"Body validation error: callback_url: {exc}"
            raise ValidationFailed(message, [FieldError("callback_url", str(exc))]) from None

    def close(self) -> None:
        self._store.close()

    def _check_capacity(self, owner: ApiKey) -> None:
        """Back-pressure: a bounded queue per key and in all (checked, then inserted: a burst of
        concurrent creates can overshoot by the number of API threads, never more)."""
        limits = self._limits
        mine, everyone = self._store.queued_counts(owner.id)
        if mine >= limits.per_key:
            message = f"this key already has {limits.per_key} generations queued; retry later"
            raise QueueFull(message, limits.retry_after)
        if everyone >= limits.total:
            raise QueueFull("the server's queue is full; retry later", limits.retry_after)

    # -- what the operations routes, the webhook deliverer and the in-process runner read -------

    def stats(self) -> StoreStats:
        return self._store.stats()

    def live_workers(self, liveness_seconds: float) -> dict[str, int]:
        return self._store.live_workers(liveness_seconds)

    def served_catalog(self, liveness_seconds: float) -> list[dict[str, Any]]:
        """`ServedModels.catalog`, each served model with its live workers (left out when the
        database cannot say: a model list should not fail with it)."""
        live: dict[str, int] = {}
        known = _probe(lambda: live.update(self._store.live_workers(liveness_seconds))) == "ok"
        return [
            {**entry, "live_workers": live.get(entry["id"], 0)}
            if known and "alias_of" not in entry
            else entry
            for entry in self.served.catalog()
        ]

    def stage_histograms(self) -> list[StageHistogram]:
        return self._store.stage_histograms()

    def claim_webhook(self, now: float, hold_seconds: float) -> Job | None:
        """A job whose webhook delivery is due, held for `hold_seconds` against other deliverers."""
        return self._store.claim_webhook(now, hold_seconds)

    def record_webhook_attempt(
        self, job_id: str, attempt: dict[str, Any], state: WebhookState, next_at: float | None
    ) -> None:
        self._store.record_webhook_attempt(job_id, attempt, state, next_at)

    def owned(self, owner: Reader, job_id: str) -> Job:
        """The job, if it exists and `owner` may reach it; NotFound otherwise (either way)."""
        job = self._store.get_job(job_id) if is_storable_id(job_id) else None
        if job is None or not _reaches(owner, job):
            raise NotFound(f"generation {job_id!r} not found")
        return job

    def cancel(self, owner: Reader, job_id: str, base_url: str) -> JobView:
        """A queued job ends at once; a running one stops at its next denoising step."""
        self._store.request_cancel(self.owned(owner, job_id).id)
        return self.get(owner, job_id, base_url)

    def readiness(self, liveness_seconds: float) -> Readiness:
        live: dict[str, int] = {}
        checks = {
            "database": _probe(lambda: live.update(self._store.live_workers(liveness_seconds))),
            "storage": self.storage_probe(),
        }
        for model in self.served.served:
            checks[f"workers:{model}"] = "ok" if live.get(model) else "no live worker"
        return Readiness(checks)

    def get(self, owner: Reader, job_id: str, base_url: str) -> JobView:
        return self.view(self.owned(owner, job_id), base_url)

    def view(self, job: Job, base_url: str) -> JobView:
        position = self._store.queue_position(job) if job.status is JobStatus.QUEUED else None
        expires_at = self._expires_at(job)
        images = tuple(
            InputImageView(c.frame, self._storage.url(c.key, base_url, self._url_ttl))
            for c in job.request.conditions
            if c.kind == "image"
        )
        artifact = job.artifact if job.status is JobStatus.COMPLETED else None
        if artifact is None:
            return JobView(job, position, None, expires_at=expires_at, input_images=images)
        video_url = self._storage.url(artifact.key, base_url, self._url_ttl)
        thumbnail = artifact.thumbnail_key
        thumbnail_url = self._storage.url(thumbnail, base_url, self._url_ttl) if thumbnail else None
        return JobView(job, position, video_url, thumbnail_url, expires_at, images)

    def _expires_at(self, job: Job) -> float | None:
        if self._retention is None or job.completed_at is None:
            return None
        return job.completed_at + self._retention

    def purge(self, now: float, batch: int = 500) -> int:
        """Remove for good the jobs past retention and the deleted ones that have ended, with
        their files; returns how many."""
        finished_before = now - self._retention if self._retention is not None else 0.0
        removed = 0
        while True:
            jobs = self._store.purge_jobs(finished_before, batch)
            for job in jobs:
                remove_job_artifacts(self._storage, job.id)
            removed += len(jobs)
            if len(jobs) < batch:
                return removed

    def list(
        self,
        owner: Reader,
        base_url: str,
        *,
        after: str | None = None,
        limit: int = 20,
        newest_first: bool = True,
    ) -> JobPage:
        """A page of the owner's jobs after the job `after` (which must be the owner's)."""
        cursor = self._store.get_job(after) if after is not None and is_storable_id(after) else None
        if after is not None and (cursor is None or not _reaches(owner, cursor)):
            raise ValidationFailed(
                f"Query validation error: no generation {after!r} to list after",
                [FieldError("after", f"no generation {after!r} to list after")],
            )
        jobs = self._store.list_jobs(
            _owner_filter(owner), after=after, limit=limit + 1, newest_first=newest_first
        )
        views = [self.view(job, base_url) for job in jobs[:limit]]
        return JobPage(views, has_more=len(jobs) > limit)

    def delete(self, owner: Reader, job_id: str) -> Job:
        """Hide the job from every read and remove its files; a pending job is canceled."""
        job = self.owned(owner, job_id)
        self._store.delete_job(job.id)
        remove_job_artifacts(self._storage, job.id)
        return job

    @staticmethod
    def content_key(job: Job, variant: Variant) -> str:
        """The stored key of a job's video, thumbnail or spritesheet; NotFound if it has none
        (yet, or it was made before spritesheets were)."""
        artifact = job.artifact if job.status is JobStatus.COMPLETED else None
        key = None
        if artifact is not None:
            keys = {
                "video": artifact.key,
                "thumbnail": artifact.thumbnail_key,
                "spritesheet": artifact.spritesheet_key,
            }
            key = keys[variant]
        if key is None:
            raise NotFound(f"generation {job.id!r} has no {variant}")
        return key

    def open_artifact(self, key: str) -> Iterator[bytes]:
        return self._storage.iter_bytes(key)


@dataclass
class Services:
    """What an API process serves with: its settings, the two services and the artifact store."""

    settings: Settings
    keys: KeyService
    jobs: JobService
    artifacts: ArtifactStore
    store: JobStore  # for a worker this process runs (kinema generate); the API uses the services

    def close(self) -> None:
        self.jobs.close()
