"""The SQL job store (SQLAlchemy 2 Core): SQLite in WAL mode, claims under BEGIN IMMEDIATE."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from kinema.domain import ApiKey, GenerationRequest, Job, JobStatus, Lease, VideoArtifact
from kinema.errors import LeaseLost

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("seed", sa.BigInteger),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("stage", sa.String(32)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("completed_at", sa.Float),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("lease_token", sa.String(64)),
    sa.Column("lease_worker", sa.String(128)),
    sa.Column("lease_expires_at", sa.Float),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("error_name", sa.String(64)),
    sa.Column("error_message", sa.Text),
    sa.Column("artifact", sa.JSON),
    sa.Column("meta", sa.JSON, nullable=False),
    sa.Index("ix_jobs_claim", "status", "model", "seq"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("key_hash", sa.String(128), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
)


def _sqlite_engine(path: Path) -> Engine:
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves, so that writers take the lock up front (BEGIN IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def open_store(database_path: Path, max_attempts: int = 3) -> SqlJobStore:
    store = SqlJobStore(_sqlite_engine(database_path), max_attempts=max_attempts)
    store.create_schema()
    return store


def _job_from_row(row: sa.Row[Any]) -> Job:
    return Job(
        id=row.id,
        owner=row.owner,
        request=GenerationRequest.from_dict(row.request),
        status=JobStatus(row.status),
        created_at=row.created_at,
        progress=row.progress,
        stage=row.stage,
        started_at=row.started_at,
        completed_at=row.completed_at,
        attempts=row.attempts,
        error_name=row.error_name,
        error_message=row.error_message,
        artifact=VideoArtifact.from_dict(row.artifact) if row.artifact else None,
        meta=dict(row.meta or {}),
        cancel_requested=row.cancel_requested,
    )


def _key_from_row(row: sa.Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id, name=row.name, created_at=row.created_at, revoked=row.revoked_at is not None
    )


class SqlJobStore:
    def __init__(self, engine: Engine, max_attempts: int = 3) -> None:
        self._engine = engine
        self._max_attempts = max_attempts

    def create_schema(self) -> None:
        with self._write() as conn:
            metadata.create_all(conn)

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            conn.execution_options(immediate=True)
            with conn.begin():
                yield conn

    # -- jobs, API side ------------------------------------------------------------------------

    def add_job(self, job: Job) -> None:
        with self._write() as conn:
            conn.execute(
                jobs.insert().values(
                    id=job.id,
                    owner=job.owner,
                    model=job.request.model,
                    request=job.request.to_dict(),
                    status=job.status.value,
                    seed=job.request.seed,
                    progress=job.progress,
                    created_at=job.created_at,
                    attempts=0,
                    max_attempts=self._max_attempts,
                    cancel_requested=False,
                    meta=job.meta,
                )
            )

    def get_job(self, job_id: str) -> Job | None:
        with self._read() as conn:
            row = conn.execute(jobs.select().where(jobs.c.id == job_id)).first()
        return _job_from_row(row) if row else None

    def queue_position(self, job: Job) -> int:
        ahead = (
            sa.select(sa.func.count())
            .select_from(jobs)
            .where(
                jobs.c.status == JobStatus.QUEUED.value,
                jobs.c.model == job.request.model,
                jobs.c.seq < sa.select(jobs.c.seq).where(jobs.c.id == job.id).scalar_subquery(),
            )
        )
        with self._read() as conn:
            return int(conn.execute(ahead).scalar_one())

    def count_jobs(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one())

    # -- jobs, worker side ---------------------------------------------------------------------

    def claim(self, models: Sequence[str], worker_id: str, lease_seconds: float) -> Lease | None:
        now = time.time()
        if not self._anything_to_claim(models, now):
            return None  # idle workers poll with a cheap read, not a write lock
        with self._write() as conn:
            self._requeue_expired(conn, now)
            row = conn.execute(
                jobs.select()
                .where(jobs.c.status == JobStatus.QUEUED.value, jobs.c.model.in_(list(models)))
                .order_by(jobs.c.seq)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            token = uuid.uuid4().hex
            expires_at = now + lease_seconds
            conn.execute(
                jobs.update()
                .where(jobs.c.seq == row.seq)
                .values(
                    status=JobStatus.RUNNING.value,
                    attempts=row.attempts + 1,
                    started_at=row.started_at or now,
                    lease_token=token,
                    lease_worker=worker_id,
                    lease_expires_at=expires_at,
                    stage="starting",
                )
            )
            claimed = conn.execute(jobs.select().where(jobs.c.seq == row.seq)).one()
        return Lease(_job_from_row(claimed), token, worker_id, expires_at)

    def _anything_to_claim(self, models: Sequence[str], now: float) -> bool:
        queued = (jobs.c.status == JobStatus.QUEUED.value) & jobs.c.model.in_(list(models))
        expired = (jobs.c.status == JobStatus.RUNNING.value) & (jobs.c.lease_expires_at < now)
        with self._read() as conn:
            found = conn.execute(sa.select(jobs.c.seq).where(queued | expired).limit(1)).first()
        return found is not None

    def _requeue_expired(self, conn: Connection, now: float) -> None:
        expired = (jobs.c.status == JobStatus.RUNNING.value) & (jobs.c.lease_expires_at < now)
        out_of_attempts = jobs.c.attempts >= jobs.c.max_attempts
        conn.execute(
            jobs.update()
            .where(expired & out_of_attempts)
            .values(
                status=JobStatus.FAILED.value,
                completed_at=now,
                lease_token=None,
                error_name="WorkerLost",
                error_message=sa.func.coalesce(
                    jobs.c.error_message,
                    "the worker running this job stopped responding too many times",
                ),
            )
        )
        conn.execute(
            jobs.update()
            .where(expired & ~out_of_attempts)
            .values(status=JobStatus.QUEUED.value, lease_token=None, progress=0.0, stage=None)
        )

    def _update_leased(self, conn: Connection, lease: Lease, **values: Any) -> None:
        result = conn.execute(
            jobs.update()
            .where(
                jobs.c.id == lease.job.id,
                jobs.c.lease_token == lease.token,
                jobs.c.status == JobStatus.RUNNING.value,
            )
            .values(**values)
        )
        if result.rowcount != 1:
            raise LeaseLost(f"job {lease.job.id}: lease {lease.token} is no longer current")

    def heartbeat(self, lease: Lease, lease_seconds: float) -> Lease:
        expires_at = time.time() + lease_seconds
        with self._write() as conn:
            self._update_leased(conn, lease, lease_expires_at=expires_at)
        return Lease(lease.job, lease.token, lease.worker_id, expires_at)

    def report_progress(self, lease: Lease, progress: float, stage: str) -> bool:
        with self._write() as conn:
            self._update_leased(conn, lease, progress=progress, stage=stage)
            canceled = conn.execute(
                sa.select(jobs.c.cancel_requested).where(jobs.c.id == lease.job.id)
            ).scalar_one()
        return bool(canceled)

    def complete(self, lease: Lease, artifact: VideoArtifact, meta: dict[str, Any]) -> None:
        self._finish(
            lease, JobStatus.COMPLETED, artifact=artifact.to_dict(), meta=meta, progress=100.0
        )

    def fail(self, lease: Lease, name: str, message: str, meta: dict[str, Any]) -> None:
        self._finish(lease, JobStatus.FAILED, error_name=name, error_message=message, meta=meta)

    def mark_canceled(self, lease: Lease) -> None:
        self._finish(
            lease,
            JobStatus.CANCELED,
            error_name="Canceled",
            error_message="the generation was canceled",
        )

    def _finish(self, lease: Lease, status: JobStatus, **values: Any) -> None:
        with self._write() as conn:
            if "meta" in values:
                current = conn.execute(sa.select(jobs.c.meta).where(jobs.c.id == lease.job.id))
                values["meta"] = {**(current.scalar_one_or_none() or {}), **values["meta"]}
            self._update_leased(
                conn,
                lease,
                status=status.value,
                completed_at=time.time(),
                lease_token=None,
                lease_expires_at=None,
                stage=status.value,
                **values,
            )

    def release(self, lease: Lease) -> None:
        """Give a job back untouched (graceful shutdown): it does not count as an attempt."""
        with self._write() as conn:
            self._update_leased(
                conn,
                lease,
                status=JobStatus.QUEUED.value,
                attempts=jobs.c.attempts - 1,
                lease_token=None,
                lease_expires_at=None,
                progress=0.0,
                stage=None,
            )

    # -- API keys ------------------------------------------------------------------------------

    def add_key(self, key: ApiKey, key_hash: str) -> None:
        with self._write() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=key.id, name=key.name, key_hash=key_hash, created_at=key.created_at
                )
            )

    def has_key_hash(self, key_hash: str) -> bool:
        """Whether this key was ever registered, revoked or not."""
        with self._read() as conn:
            query = sa.select(api_keys.c.id).where(api_keys.c.key_hash == key_hash)
            return conn.execute(query).first() is not None

    def find_key(self, key_hash: str) -> ApiKey | None:
        with self._read() as conn:
            row = conn.execute(
                api_keys.select().where(
                    api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None)
                )
            ).first()
        return _key_from_row(row) if row else None

    def list_keys(self) -> list[ApiKey]:
        with self._read() as conn:
            rows = conn.execute(api_keys.select().order_by(api_keys.c.created_at)).all()
        return [_key_from_row(row) for row in rows]

    def revoke_key(self, id_or_name: str) -> int:
        with self._write() as conn:
            result = conn.execute(
                api_keys.update()
                .where(
                    (api_keys.c.id == id_or_name) | (api_keys.c.name == id_or_name),
                    api_keys.c.revoked_at.is_(None),
                )
                .values(revoked_at=time.time())
            )
        return int(result.rowcount)
