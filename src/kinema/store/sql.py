"""The SQL job store (SQLAlchemy 2 Core), one code for SQLite and PostgreSQL.

SQLite (the embedded default): WAL, every write transaction starts with BEGIN IMMEDIATE, so claims
are serialized. PostgreSQL (scale-out): READ COMMITTED, claims lock their row with
`SELECT … FOR UPDATE SKIP LOCKED`, idle workers wait on LISTEN/NOTIFY.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypedDict, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine

from kinema.domain import ApiKey, GenerationRequest, Job, JobStatus, Lease, VideoArtifact
from kinema.errors import LeaseLost
from kinema.store.db import SQLITE_BUSY_SECONDS, create_engine, is_postgres, libpq_conninfo
from kinema.store.fair import (
    idle_owners_oldest_jobs,
    lock_oldest_queued,
    owners_in_fair_order,
    running_per_owner,
)
from kinema.store.listen import CHANNEL, PgListener
from kinema.store.migrations import migrate_engine
from kinema.store.migrations import require_current as require_current_schema
from kinema.store.schema import api_keys, jobs, metadata, queue_depth, stage_stats, workers
from kinema.store_protocol import (
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

__all__ = [
    "SqlJobStore",
    "api_keys",
    "jobs",
    "metadata",
    "open_store",
    "open_store_url",
    "stage_stats",
    "workers",
]

logger = logging.getLogger("kinema.store")

QUEUED = JobStatus.QUEUED.value
RUNNING = JobStatus.RUNNING.value
COMPLETED = JobStatus.COMPLETED.value
FINAL = [COMPLETED, JobStatus.FAILED.value, JobStatus.CANCELED.value]
SQLITE_CHECKPOINT_EVERY = 500  # SQLite: this process's commits between two WAL checkpoints
SQLITE_POLL_S = 0.25  # how often an idle SQLite waiter looks for work from other processes
_EXPIRY_MARGIN_S = 0.05  # wake a little after a lease expires, not a little before
_CANCELED_ERROR = {"error_name": CANCELED_NAME, "error_message": CANCELED_MESSAGE}

# The statements of the API's hot reads, built once.
_JOB_BY_ID = jobs.select().where(jobs.c.id == sa.bindparam("job_id"), jobs.c.deleted_at.is_(None))
_LIVE_KEY_BY_HASH = api_keys.select().where(
    api_keys.c.key_hash == sa.bindparam("key_hash"), api_keys.c.revoked_at.is_(None)
)
_QUEUED_IN_ALL = sa.func.coalesce(sa.func.sum(queue_depth.c.queued), 0)
# Counted from behind: the model's queued jobs less those at or after this one. A job just
# created (the common case) has next to nothing behind it, whatever the depth of the queue.
_QUEUED_OF_MODEL = sa.select(_QUEUED_IN_ALL).where(queue_depth.c.model == sa.bindparam("model"))
_QUEUED_FROM_JOB = (
    sa.select(sa.func.count())
    .select_from(jobs)
    .where(
        jobs.c.status == QUEUED,
        jobs.c.model == sa.bindparam("model"),
        jobs.c.seq
        >= sa.select(jobs.c.seq).where(jobs.c.id == sa.bindparam("job_id")).scalar_subquery(),
    )
)
_QUEUED_AHEAD = sa.select(
    (_QUEUED_OF_MODEL.scalar_subquery() - _QUEUED_FROM_JOB.scalar_subquery()).label("ahead")
)


class _NewJobRow(TypedDict):
    """The columns add_job sets, with its values' types; the others start empty."""

    id: str
    owner: str
    model: str
    request: dict[str, Any]
    status: str
    seed: int | None
    progress: float
    created_at: float
    attempts: int
    max_attempts: int
    cancel_requested: bool
    meta: dict[str, Any]
    callback_url: str | None
    webhook_state: str | None
    webhook_next_at: float | None


_INSERT_JOB = jobs.insert().values(
    {name: sa.bindparam(name) for name in _NewJobRow.__annotations__}
)
# PostgreSQL: the insert and the wake-up of LISTENing workers in one statement (sent at commit).
_INSERT_QUEUED_JOB_PG = sa.select(
    sa.func.pg_notify(CHANNEL, sa.literal_column("model")).label("notified")
).select_from(_INSERT_JOB.returning(jobs.c.model).cte("inserted"))
_QUEUED = sa.select(_QUEUED_IN_ALL.label("queued"))
_QUEUED_OF_OWNER = _QUEUED.where(queue_depth.c.owner == sa.bindparam("owner"))
_OWNERS_QUEUED = sa.case((queue_depth.c.owner == sa.bindparam("owner"), queue_depth.c.queued))
_QUEUED_OF_OWNER_AND_ALL = sa.select(
    sa.func.coalesce(sa.func.sum(_OWNERS_QUEUED), 0).label("of_owner"),
    _QUEUED_IN_ALL.label("in_all"),
)


def open_store_url(
    url: str | URL,
    max_attempts: int = 3,
    *,
    auto_migrate: bool | None = None,
    require_current: bool = True,
    clock: Callable[[], float] = time.time,
) -> SqlJobStore:
    """Open the store at `sqlite:///path` or `postgresql+psycopg://…`; `clock` gives the time
    of leases, heartbeats and every timestamp it writes (tests pass their own).

    `auto_migrate` (default: on for SQLite, the embedded single-machine case; off for PostgreSQL,
    where `kinema db upgrade` is the operator's job) upgrades the schema first. With
    `require_current`, a schema that is missing, older or newer raises SchemaNotCurrent.
    """
    engine = create_engine(url)
    try:
        if auto_migrate is None:
            auto_migrate = not is_postgres(engine)
        if auto_migrate:
            migrate_engine(engine)
        if require_current:
            require_current_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return SqlJobStore(engine, max_attempts=max_attempts, clock=clock)


def open_store(database_path: Path, max_attempts: int = 3) -> SqlJobStore:
    """The embedded SQLite store in a data directory (migrated on open)."""
    return open_store_url(f"sqlite:///{database_path}", max_attempts=max_attempts)


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
        callback_url=row.callback_url,
    )


def _key_from_row(row: sa.Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        revoked=row.revoked_at is not None,
        webhook_secret=row.webhook_secret,
    )


class _RowClass(Protocol):
    """A namedtuple class, as _DirectRead uses it."""

    def _make(self, iterable: Iterable[Any], /) -> tuple[Any, ...]: ...


class _DirectRead:
    """A read of one statement, run straight on a pooled DBAPI connection without a transaction
    around it (SQLite runs one statement atomically). SQLAlchemy's execution layer costs several
    times the query itself, and these are the API's hottest reads; the SQL and the conversion of
    the values are still SQLAlchemy's, made once."""

    def __init__(self, engine: Engine, statement: sa.Select[Any]) -> None:
        self._engine = engine
        compiled = statement.compile(dialect=engine.dialect)
        self._sql = str(compiled)
        self._defaults = dict(compiled.params)  # the statement's literal values
        self._order = list(compiled.positiontup or ())  # positional parameters' names, in order
        columns = list(statement.selected_columns)
        # typeshed types namedtuple() as returning a plain tuple class, without `_make`.
        self._row = cast(_RowClass, namedtuple("_Row", [c.name for c in columns]))
        self._converters = self._value_converters(engine.dialect, columns)

    @staticmethod
    def _value_converters(
        dialect: sa.Dialect, columns: list[sa.ColumnElement[Any]]
    ) -> list[Callable[[Any], Any] | None]:
        return [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]

    def _fetch(self, driver: Any, params: dict[str, Any]) -> Sequence[Any] | None:
        cursor = driver.execute(self._sql, tuple(params[name] for name in self._order))
        return cursor.fetchone()

    def first(self, **params: Any) -> Any | None:
        """The first row (its columns as attributes), or None."""
        connection = self._engine.raw_connection()
        try:
            found = self._fetch(connection.driver_connection, {**self._defaults, **params})
        finally:
            connection.close()
        if found is None:
            return None
        return self._row._make(
            value if convert is None else convert(value)
            for convert, value in zip(self._converters, found, strict=True)
        )

    def scalar(self, **params: Any) -> Any:
        """The first column of the one row."""
        row = self.first(**params)
        if row is None:
            raise LookupError("the statement returned no row")
        return row[0]


class _DirectPostgresRead(_DirectRead):
    """On PostgreSQL, in autocommit (READ COMMITTED gives one statement one snapshot): no BEGIN
    and ROLLBACK round trips. psycopg itself returns JSON, floats and booleans as Python values."""

    @staticmethod
    def _value_converters(
        dialect: sa.Dialect, columns: list[sa.ColumnElement[Any]]
    ) -> list[Callable[[Any], Any] | None]:
        return [None] * len(columns)

    def _fetch(self, driver: Any, params: dict[str, Any]) -> Sequence[Any] | None:
        with _autocommit(driver), driver.cursor() as cursor:
            cursor.execute(self._sql, params)
            return cursor.fetchone()


@contextmanager
def _autocommit(driver: Any) -> Iterator[None]:
    """A pooled psycopg connection (idle when checked out) in autocommit meanwhile."""
    driver.autocommit = True
    try:
        yield
    finally:
        if not driver.closed:  # a broken connection raised already; keep that error
            driver.autocommit = False


class _DirectInsert:
    """An insert run straight on a pooled DBAPI connection as one autocommitted statement, its
    own transaction with whatever its triggers do: the API's hottest write, without SQLAlchemy's
    execution layer or the BEGIN and COMMIT round trips (each of which also gives the GIL up and
    waits to take it back, while this process's other writers wait for their turn)."""

    def __init__(
        self, engine: Engine, statement: sa.Insert | sa.Select[Any], table: sa.Table
    ) -> None:
        self._engine = engine
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        self._sql = str(compiled)
        self._order = list(compiled.positiontup or ())
        self._postgres = is_postgres(engine)
        self._processors = {
            column.key: column.type.dialect_impl(dialect).bind_processor(dialect)
            for column in table.columns
        }
        literals = compiled.params.items()  # e.g. pg_notify's channel
        self._literals = {name: v for name, v in literals if name not in self._processors}

    def __call__(self, values: Mapping[str, Any]) -> None:
        params = {
            name: value if (process := self._processors[name]) is None else process(value)
            for name, value in values.items()
        }
        params.update(self._literals)
        connection = self._engine.raw_connection()
        try:
            driver = connection.driver_connection
            assert driver is not None  # a connection just checked out of the pool is live
            if self._postgres:
                with _autocommit(driver), driver.cursor() as cursor:
                    cursor.execute(self._sql, params)
            else:  # the pool's SQLite connections are in autocommit (isolation_level None)
                driver.execute(self._sql, tuple(params[name] for name in self._order))
        finally:
            connection.close()


def _expired(now: float) -> sa.ColumnElement[bool]:
    return (jobs.c.status == RUNNING) & (jobs.c.lease_expires_at < now)


class SqlJobStore:
    def __init__(
        self, engine: Engine, max_attempts: int = 3, clock: Callable[[], float] = time.time
    ) -> None:
        self._engine = engine
        self._now = clock
        self._max_attempts = max_attempts
        self._postgres = is_postgres(engine)
        self._listener = PgListener(libpq_conninfo(engine.url)) if self._postgres else None
        self._wakeups = 0  # same-process wake-ups for SQLite waiters
        self._wakeup = threading.Condition()
        kind = _DirectPostgresRead if self._postgres else _DirectRead

        def read(statement: sa.Select[Any]) -> _DirectRead:
            return kind(engine, statement)

        self._job_by_id = read(_JOB_BY_ID)
        self._live_key_by_hash = read(_LIVE_KEY_BY_HASH)
        self._queued_ahead = read(_QUEUED_AHEAD)
        self._queued = read(_QUEUED)
        self._queued_of_owner = read(_QUEUED_OF_OWNER)
        self._queued_of_owner_and_all = read(_QUEUED_OF_OWNER_AND_ALL)
        self._insert_job = _DirectInsert(engine, _INSERT_JOB, jobs)
        self._insert_queued_job = self._insert_job  # SQLite wakes its waiters in process
        if self._postgres:
            self._insert_queued_job = _DirectInsert(engine, _INSERT_QUEUED_JOB_PG, jobs)
        # SQLite: this process's writers take turns here rather than in SQLite's busy handler,
        # which sleeps (up to 100 ms a time) and so makes a queue of writers slow and unfair.
        self._write_turn = threading.Lock() if not self._postgres else None
        self._commits = 0  # SQLite: this process's write transactions, for the checkpoints
        self._checkpointing = threading.Lock()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self._engine.dispose()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self._write_turn is None:
            with self._engine.connect() as conn, conn.begin():
                yield conn
            return
        with self._turn_to_write(), self._engine.connect() as conn:
            conn.execution_options(immediate=True)
            with conn.begin():
                yield conn
        self._count_commit()

    def _count_commit(self) -> None:
        """SQLite: one more write transaction committed; every so often, a checkpoint."""
        self._commits += 1  # under the GIL; a lost increment only delays a checkpoint
        if self._commits % SQLITE_CHECKPOINT_EVERY == 0:
            self._checkpoint()

    @contextmanager
    def _turn_to_write(self) -> Iterator[None]:
        """SQLite: wait for this process's writer ahead, as long as SQLite would wait for a lock."""
        assert self._write_turn is not None
        if not self._write_turn.acquire(timeout=SQLITE_BUSY_SECONDS):
            raise TimeoutError(f"the database stayed busy for {SQLITE_BUSY_SECONDS} s")
        try:
            yield
        finally:
            self._write_turn.release()

    def _checkpoint(self) -> None:
        """Copy the WAL's pages into the database (SQLite), letting writers go on meanwhile. It
        runs after a write has committed, so its failure is logged, never the write's."""
        if not self._checkpointing.acquire(blocking=False):
            return  # one is under way
        try:
            connection = self._engine.raw_connection()
            try:
                driver = connection.driver_connection
                assert driver is not None  # a connection just checked out of the pool is live
                driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                connection.close()
        except Exception:
            logger.warning("WAL checkpoint failed; the next one will retry", exc_info=True)
        finally:
            self._checkpointing.release()

    # -- jobs, API side ------------------------------------------------------------------------

    def add_job(self, job: Job) -> None:
        values: _NewJobRow = {
            "id": job.id,
            "owner": job.owner,
            "model": job.request.model,
            "request": job.request.to_dict(),
            "status": job.status.value,
            "seed": job.request.seed,
            "progress": job.progress,
            "created_at": job.created_at,
            "attempts": 0,
            "max_attempts": self._max_attempts,
            "cancel_requested": False,
            "meta": job.meta,
            "callback_url": job.callback_url,
            "webhook_state": "pending" if job.callback_url else None,
            "webhook_next_at": job.created_at if job.callback_url else None,
        }
        insert = self._insert_queued_job if job.status is JobStatus.QUEUED else self._insert_job
        if self._write_turn is None:
            insert(values)
        else:
            with self._turn_to_write():
                insert(values)
            self._count_commit()
        self._wake_local()

    def get_job(self, job_id: str) -> Job | None:
        row = self._job_by_id.first(job_id=job_id)
        return _job_from_row(row) if row else None

    def list_jobs(
        self, owner: str | None, *, after: str | None = None, limit: int = 20, newest_first: bool
    ) -> list[Job]:
        query = jobs.select().where(jobs.c.deleted_at.is_(None))
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        if after is not None:
            cursor = sa.select(jobs.c.seq).where(jobs.c.id == after).scalar_subquery()
            query = query.where(jobs.c.seq < cursor if newest_first else jobs.c.seq > cursor)
        query = query.order_by(jobs.c.seq.desc() if newest_first else jobs.c.seq).limit(limit)
        with self._read() as conn:
            return [_job_from_row(row) for row in conn.execute(query)]

    def delete_job(self, job_id: str) -> Job | None:
        with self._write() as conn:
            job = self._cancel(conn, job_id)
            if job is not None:
                conn.execute(
                    jobs.update()
                    .where(jobs.c.id == job_id, jobs.c.deleted_at.is_(None))
                    .values(deleted_at=self._now())
                )
        return job

    def _get(self, conn: Connection, job_id: str) -> Job | None:
        row = conn.execute(jobs.select().where(jobs.c.id == job_id)).first()
        return _job_from_row(row) if row else None

    def queue_position(self, job: Job) -> int:
        return int(self._queued_ahead.scalar(model=job.request.model, job_id=job.id))

    def queued_counts(self, owner: str) -> tuple[int, int]:
        row = self._queued_of_owner_and_all.first(owner=owner)
        assert row is not None  # an aggregate without GROUP BY returns one row
        return int(row.of_owner), int(row.in_all)

    def count_queued(self, owner: str | None = None) -> int:
        if owner is None:
            return int(self._queued.scalar())
        return int(self._queued_of_owner.scalar(owner=owner))

    def purge_jobs(self, finished_before: float, limit: int = 500) -> list[Job]:
        webhook_done = sa.or_(jobs.c.webhook_state.is_(None), jobs.c.webhook_state != "pending")
        expired = sa.or_(jobs.c.completed_at < finished_before, jobs.c.deleted_at.is_not(None))
        chosen = (
            sa.select(jobs.c.seq)
            .where(jobs.c.status.in_(FINAL), expired, webhook_done)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._write() as conn:
            seqs = list(conn.execute(chosen).scalars())
            if not seqs:
                return []
            removed = conn.execute(jobs.delete().where(jobs.c.seq.in_(seqs)).returning(*jobs.c))
            return [_job_from_row(row) for row in removed]

    def request_cancel(self, job_id: str) -> Job | None:
        with self._write() as conn:
            return self._cancel(conn, job_id)

    def _cancel(self, conn: Connection, job_id: str) -> Job | None:
        status = conn.execute(
            sa.select(jobs.c.status).where(jobs.c.id == job_id).with_for_update()
        ).scalar_one_or_none()
        if status == QUEUED:
            conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id)
                .values(
                    status=JobStatus.CANCELED.value,
                    completed_at=self._now(),
                    stage=JobStatus.CANCELED.value,
                    error_name=CANCELED_NAME,
                    error_message=CANCELED_MESSAGE,
                    cancel_requested=True,
                )
            )
        elif status == RUNNING:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(cancel_requested=True))
        return self._get(conn, job_id) if status is not None else None

    def stats(self) -> StoreStats:
        query = sa.select(jobs.c.status, jobs.c.model, sa.func.count()).group_by(
            jobs.c.status, jobs.c.model
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        by_status = dict.fromkeys((s.value for s in JobStatus), 0)
        queued: dict[str, int] = {}
        running: dict[str, int] = {}
        for status, model, count in rows:
            by_status[status] = by_status.get(status, 0) + count
            if status == QUEUED:
                queued[model] = count
            elif status == RUNNING:
                running[model] = count
        return StoreStats(queued=queued, by_status=by_status, running=running)

    def stage_histograms(self) -> list[StageHistogram]:
        query = sa.select(stage_stats).order_by(
            stage_stats.c.model, stage_stats.c.stage, stage_stats.c.bucket
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        found: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
        for row in rows:
            counts, seconds = found.setdefault(
                (row.model, row.stage), ([0] * (len(STAGE_BUCKETS) + 1), [])
            )
            counts[row.bucket] = int(row.samples)
            seconds.append(float(row.seconds))
        return [
            StageHistogram(model, stage, tuple(counts), sum(seconds))
            for (model, stage), (counts, seconds) in found.items()
        ]

    def _count_stages(self, conn: Connection, model: str, timings: object) -> None:
        dialect = postgresql if self._postgres else sqlite
        for stage, seconds in stage_samples(timings):
            upsert = dialect.insert(stage_stats).values(
                model=model, stage=stage, bucket=stage_bucket(seconds), samples=1, seconds=seconds
            )
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[stage_stats.c.model, stage_stats.c.stage, stage_stats.c.bucket],
                    set_={
                        "samples": stage_stats.c.samples + 1,
                        "seconds": stage_stats.c.seconds + seconds,
                    },
                )
            )

    # -- jobs, worker side ---------------------------------------------------------------------

    def claim(self, models: Sequence[str], worker_id: str, lease_seconds: float) -> Lease | None:
        models = sorted(set(models))
        now = self._now()
        if not models:
            return None
        if not self._postgres and not self._anything_to_claim(models, now):
            return None  # SQLite: idle workers look with a cheap read, not the write lock
        with self._write() as conn:
            requeued = self._requeue_expired(conn, now)
            lease = self._claim_fairly(conn, models, worker_id, now + lease_seconds, now)
        if requeued:
            self._wake_local()
        return lease

    def _claim_fairly(
        self, conn: Connection, models: list[str], worker_id: str, expires_at: float, now: float
    ) -> Lease | None:
        """The owner with the fewest running jobs, ties to the oldest queued job; then that
        owner's oldest job. A row another claimer holds is skipped (SKIP LOCKED): next one."""
        running = running_per_owner(conn)
        for seq in idle_owners_oldest_jobs(conn, models, running):
            row = conn.execute(lock_oldest_queued(jobs.c.seq == seq)).first()
            if row is not None:
                return self._lease(conn, row, worker_id, expires_at, now)
        for owner, model in owners_in_fair_order(conn, models, running, postgres=self._postgres):
            row = conn.execute(
                lock_oldest_queued(jobs.c.model == model, jobs.c.owner == owner)
            ).first()
            if row is not None:
                return self._lease(conn, row, worker_id, expires_at, now)
        return None

    def _lease(
        self, conn: Connection, row: sa.Row[Any], worker_id: str, expires_at: float, now: float
    ) -> Lease:
        token = uuid.uuid4().hex
        claimed = conn.execute(
            jobs.update()
            .where(jobs.c.seq == row.seq)
            .values(
                status=RUNNING,
                attempts=row.attempts + 1,
                started_at=row.started_at or now,
                lease_token=token,
                lease_worker=worker_id,
                lease_expires_at=expires_at,
                stage="starting",
            )
            .returning(*jobs.c)
        ).one()
        return Lease(_job_from_row(claimed), token, worker_id, expires_at)

    def _anything_to_claim(self, models: Sequence[str], now: float) -> bool:
        queued = (jobs.c.status == QUEUED) & jobs.c.model.in_(list(models))
        with self._read() as conn:
            found = conn.execute(sa.select(jobs.c.seq).where(queued).limit(1)).first()
            if found is None:
                found = conn.execute(sa.select(jobs.c.seq).where(_expired(now)).limit(1)).first()
        return found is not None

    def _requeue_expired(self, conn: Connection, now: float) -> bool:
        """Expired leases: requeue the job, or end it (canceled, or out of attempts)."""
        rows = conn.execute(
            sa.select(
                jobs.c.seq,
                jobs.c.model,
                jobs.c.attempts,
                jobs.c.max_attempts,
                jobs.c.cancel_requested,
            )
            .where(_expired(now))
            .with_for_update(skip_locked=True)  # another claimer is on it: leave it to them
        ).all()
        if not rows:
            return False
        ended = {"lease_token": None, "lease_expires_at": None, "completed_at": now}
        canceled = [r.seq for r in rows if r.cancel_requested]
        lost = [r.seq for r in rows if not r.cancel_requested and r.attempts >= r.max_attempts]
        again = [r for r in rows if not r.cancel_requested and r.attempts < r.max_attempts]
        self._update_seqs(
            conn,
            canceled,
            status=JobStatus.CANCELED.value,
            stage=JobStatus.CANCELED.value,
            error_name=CANCELED_NAME,
            error_message=CANCELED_MESSAGE,
            **ended,
        )
        self._update_seqs(
            conn,
            lost,
            status=JobStatus.FAILED.value,
            stage=JobStatus.FAILED.value,
            error_name=WORKER_LOST_NAME,
            error_message=sa.func.coalesce(jobs.c.error_message, WORKER_LOST_MESSAGE),
            **ended,
        )
        self._update_seqs(
            conn,
            [r.seq for r in again],
            status=QUEUED,
            lease_token=None,
            lease_expires_at=None,
            progress=0.0,
            stage=None,
        )
        self._notify(conn, {r.model for r in again})
        return bool(again)

    @staticmethod
    def _update_seqs(conn: Connection, seqs: list[int], **values: Any) -> None:
        if seqs:
            conn.execute(jobs.update().where(jobs.c.seq.in_(seqs)).values(**values))

    def _update_leased(self, conn: Connection, lease: Lease, **values: Any) -> None:
        result = conn.execute(
            jobs.update()
            .where(
                jobs.c.id == lease.job.id,
                jobs.c.lease_token == lease.token,
                jobs.c.status == RUNNING,
            )
            .values(**values)
        )
        if result.rowcount != 1:
            raise LeaseLost(f"job {lease.job.id}: lease {lease.token} is no longer current")

    def heartbeat(self, lease: Lease, lease_seconds: float) -> Lease:
        expires_at = self._now() + lease_seconds
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
        deleted_at = sa.select(jobs.c.deleted_at).where(jobs.c.id == lease.job.id)
        with self._write() as conn:
            deleted = conn.execute(deleted_at.with_for_update()).scalar_one_or_none() is not None
            if deleted:  # deleted while it ran: its output is unwanted
                self._finish_in(conn, lease, JobStatus.CANCELED, **_CANCELED_ERROR)
            else:
                values = {"artifact": artifact.to_dict(), "meta": meta, "progress": 100.0}
                self._finish_in(conn, lease, JobStatus.COMPLETED, **values)
                self._count_stages(conn, lease.job.request.model, meta.get("timings"))
        if deleted:
            raise LeaseLost(f"job {lease.job.id} was deleted")

    def fail(self, lease: Lease, name: str, message: str, meta: dict[str, Any]) -> None:
        self._finish(lease, JobStatus.FAILED, error_name=name, error_message=message, meta=meta)

    def mark_canceled(self, lease: Lease) -> None:
        self._finish(lease, JobStatus.CANCELED, **_CANCELED_ERROR)

    def _finish(self, lease: Lease, status: JobStatus, **values: Any) -> None:
        with self._write() as conn:
            self._finish_in(conn, lease, status, **values)

    def _finish_in(self, conn: Connection, lease: Lease, status: JobStatus, **values: Any) -> None:
        if "meta" in values:
            current = conn.execute(sa.select(jobs.c.meta).where(jobs.c.id == lease.job.id))
            values["meta"] = {**(current.scalar_one_or_none() or {}), **values["meta"]}
        self._update_leased(
            conn,
            lease,
            status=status.value,
            completed_at=self._now(),
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
                status=QUEUED,
                attempts=jobs.c.attempts - 1,
                lease_token=None,
                lease_expires_at=None,
                progress=0.0,
                stage=None,
            )
            self._notify(conn, [lease.job.request.model])
        self._wake_local()

    # -- webhooks ------------------------------------------------------------------------------

    def claim_webhook(self, now: float, hold_seconds: float) -> Job | None:
        due = (
            sa.select(jobs.c.seq)
            .where(
                jobs.c.webhook_state == "pending",
                jobs.c.webhook_next_at <= now,
                jobs.c.status.in_(FINAL),
            )
            .order_by(jobs.c.webhook_next_at)
            .limit(1)
        )
        with self._read() as conn:  # idle deliverers look with a read, not the write lock
            if conn.execute(due).first() is None:
                return None
        with self._write() as conn:
            seq = conn.execute(due.with_for_update(skip_locked=True)).scalar_one_or_none()
            if seq is None:
                return None
            row = conn.execute(
                jobs.update()
                .where(jobs.c.seq == seq)
                .values(webhook_next_at=now + hold_seconds)
                .returning(*jobs.c)
            ).one()
        return _job_from_row(row)

    def record_webhook_attempt(
        self, job_id: str, attempt: dict[str, Any], state: WebhookState, next_at: float | None
    ) -> None:
        with self._write() as conn:
            meta = conn.execute(
                sa.select(jobs.c.meta).where(jobs.c.id == job_id).with_for_update()
            ).scalar_one()
            webhook = dict(meta.get("webhook") or {})
            webhook["attempts"] = [*webhook.get("attempts", []), attempt]
            webhook["state"] = state
            conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id)
                .values(
                    meta={**meta, "webhook": webhook},
                    webhook_state=state,
                    webhook_next_at=next_at,
                )
            )

    # -- wake-ups ------------------------------------------------------------------------------

    def wait_for_work(self, models: Sequence[str], timeout: float) -> None:
        """PostgreSQL: LISTEN until a NOTIFY for one of `models` (or the next lease expiry).
        SQLite (one machine): wait for a same-process wake-up, looking every SQLITE_POLL_S."""
        deadline = time.monotonic() + max(0.0, timeout)
        expiry = self._next_lease_expiry()
        if expiry is not None:  # an expired lease needs a claim to requeue it: wake up for it
            until_expiry = expiry - self._now() + _EXPIRY_MARGIN_S
            deadline = min(deadline, time.monotonic() + max(until_expiry, SQLITE_POLL_S))
        if self._listener is not None:
            self._listener.wait(
                set(models), deadline, lambda: self._anything_to_claim(models, self._now())
            )
        else:
            self._poll(models, deadline)

    def _poll(self, models: Sequence[str], deadline: float) -> None:
        with self._wakeup:
            seen = self._wakeups
        while (remaining := deadline - time.monotonic()) > 0:
            with self._wakeup:
                if self._wakeups == seen:
                    self._wakeup.wait(min(remaining, SQLITE_POLL_S))
                seen = self._wakeups
            if self._anything_to_claim(models, self._now()):
                return

    def _next_lease_expiry(self) -> float | None:
        query = sa.select(sa.func.min(jobs.c.lease_expires_at)).where(jobs.c.status == RUNNING)
        with self._read() as conn:
            value = conn.execute(query).scalar_one_or_none()
        return float(value) if value is not None else None

    def _notify(self, conn: Connection, models: Iterable[str]) -> None:
        """Tell LISTENing workers (at commit) that work for these models can be claimed."""
        if not self._postgres:
            return
        for model in sorted(set(models)):
            conn.execute(sa.select(sa.func.pg_notify(CHANNEL, model)))

    def _wake_local(self) -> None:
        with self._wakeup:
            self._wakeups += 1
            self._wakeup.notify_all()

    # -- workers -------------------------------------------------------------------------------

    def register_worker(self, worker_id: str, models: Sequence[str]) -> None:
        now = self._now()
        values = {"id": worker_id, "models": list(models), "started_at": now, "last_seen": now}
        dialect = postgresql if self._postgres else sqlite
        upsert = dialect.insert(workers).values(**values)
        upsert = upsert.on_conflict_do_update(
            index_elements=[workers.c.id],
            set_={"models": upsert.excluded.models, "started_at": now, "last_seen": now},
        )
        with self._write() as conn:
            conn.execute(upsert)

    def worker_seen(self, worker_id: str) -> None:
        with self._write() as conn:
            conn.execute(
                workers.update().where(workers.c.id == worker_id).values(last_seen=self._now())
            )

    def forget_worker(self, worker_id: str) -> None:
        with self._write() as conn:
            conn.execute(workers.delete().where(workers.c.id == worker_id))

    def live_workers(self, max_age_seconds: float) -> dict[str, int]:
        since = self._now() - max_age_seconds
        with self._read() as conn:
            rows = conn.execute(sa.select(workers.c.models).where(workers.c.last_seen >= since))
            served = [list(models or []) for (models,) in rows]
        counts: dict[str, int] = {}
        for models in served:
            for model in set(models):
                counts[model] = counts.get(model, 0) + 1
        return counts

    # -- API keys ------------------------------------------------------------------------------

    def add_key(self, key: ApiKey, key_hash: str) -> None:
        with self._write() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=key.id,
                    name=key.name,
                    key_hash=key_hash,
                    created_at=key.created_at,
                    webhook_secret=key.webhook_secret,
                )
            )

    def has_key_hash(self, key_hash: str) -> bool:
        """Whether this key was ever registered, revoked or not."""
        with self._read() as conn:
            query = sa.select(api_keys.c.id).where(api_keys.c.key_hash == key_hash)
            return conn.execute(query).first() is not None

    def find_key(self, key_hash: str) -> ApiKey | None:
        row = self._live_key_by_hash.first(key_hash=key_hash)
        return _key_from_row(row) if row else None

    def get_key(self, key_id: str) -> ApiKey | None:
        with self._read() as conn:
            row = conn.execute(api_keys.select().where(api_keys.c.id == key_id)).first()
        return _key_from_row(row) if row else None

    def set_webhook_secret(self, id_or_name: str, secret: str) -> int:
        with self._write() as conn:
            result = conn.execute(
                api_keys.update()
                .where((api_keys.c.id == id_or_name) | (api_keys.c.name == id_or_name))
                .values(webhook_secret=secret)
            )
        return int(result.rowcount)

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
                .values(revoked_at=self._now())
            )
        return int(result.rowcount)
