"""Fair claims across owners (API keys), as queries both databases run.

The rule: among owners with queued jobs for the worker's models, the owner with the fewest running
jobs goes first; ties go to the owner whose oldest queued job is oldest; that owner's oldest job is
claimed. Two ways to find it, both cheap with a deep queue:

- fast path: the head of the queue (the oldest _HEAD jobs per model, index-only on ix_jobs_queue).
  Owners that run nothing rank first, so the oldest head job of such an owner is the answer —
  provided no unseen job could be older, which the head's last seq bounds.
- otherwise, every owner with queued work, from a loose index scan of ix_jobs_fair (one or two
  index probes per owner, whatever the queue depth), ranked in Python.
"""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kinema.domain import JobStatus
from kinema.store.schema import jobs

QUEUED = JobStatus.QUEUED.value
RUNNING = JobStatus.RUNNING.value

_HEAD = 64  # queued jobs per model the fast path of a claim looks at
_QUEUE_HEAD = (
    sa.select(jobs.c.seq, jobs.c.owner)
    .where(jobs.c.status == QUEUED, jobs.c.model == sa.bindparam("model"))
    .order_by(jobs.c.seq)
    .limit(sa.bindparam("limit"))
)
_RUNNING_PER_OWNER = (
    sa.select(jobs.c.owner, sa.func.count()).where(jobs.c.status == RUNNING).group_by(jobs.c.owner)
)

# The owners with queued jobs for one model, each with its oldest queued job: a loose index scan
# of ix_jobs_fair (an index probe or two per owner), so its cost grows with the number of owners
# with queued work, not with the depth of the queue.
_WAITING_OWNERS_PG = sa.text(
    """
    WITH RECURSIVE owners(owner, first_seq) AS (
        (SELECT owner, seq FROM jobs WHERE status = 'queued' AND model = :model
         ORDER BY owner, seq LIMIT 1)
        UNION ALL
        SELECT next.owner, next.seq FROM owners CROSS JOIN LATERAL (
            SELECT j.owner, j.seq FROM jobs j
            WHERE j.status = 'queued' AND j.model = :model AND j.owner > owners.owner
            ORDER BY j.owner, j.seq LIMIT 1
        ) AS next
    )
    SELECT owner, first_seq FROM owners
    """
)
_WAITING_OWNERS_SQLITE = sa.text(  # no LATERAL: the next owner, then its oldest job
    """
    WITH RECURSIVE owners(owner) AS (
        SELECT (SELECT owner FROM jobs WHERE status = 'queued' AND model = :model
                ORDER BY owner LIMIT 1)
        UNION ALL
        SELECT (SELECT j.owner FROM jobs j
                WHERE j.status = 'queued' AND j.model = :model AND j.owner > owners.owner
                ORDER BY j.owner LIMIT 1)
        FROM owners WHERE owners.owner IS NOT NULL
    )
    SELECT owner,
           (SELECT j.seq FROM jobs j
            WHERE j.status = 'queued' AND j.model = :model AND j.owner = owners.owner
            ORDER BY j.seq LIMIT 1) AS first_seq
    FROM owners WHERE owner IS NOT NULL
    """
)


def lock_oldest_queued(*where: sa.ColumnElement[bool]) -> sa.Select[Any]:
    return (
        sa.select(jobs.c.seq, jobs.c.attempts, jobs.c.started_at)
        .where(jobs.c.status == QUEUED, *where)
        .order_by(jobs.c.seq)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


def running_per_owner(conn: Connection) -> dict[str, int]:
    return {owner: count for owner, count in conn.execute(_RUNNING_PER_OWNER)}


def idle_owners_oldest_jobs(
    conn: Connection, models: list[str], running: dict[str, int]
) -> list[int]:
    """The fast path, from the head of the queue: queued jobs whose owners run nothing (they
    rank first), oldest first. Empty when the head cannot tell; then all owners are ranked."""
    found: list[int] = []
    horizon = math.inf  # the unseen part of a full head starts after this
    for model in models:
        head = conn.execute(_QUEUE_HEAD, {"model": model, "limit": _HEAD}).all()
        if len(head) == _HEAD:
            horizon = min(horizon, head[-1].seq)
        found += [row.seq for row in head if row.owner not in running]
    return sorted(seq for seq in found if seq <= horizon)


def owners_in_fair_order(
    conn: Connection, models: list[str], running: dict[str, int], *, postgres: bool
) -> list[tuple[str, str]]:
    """Every owner with queued work, (owner, model) in fair order."""
    waiting = _WAITING_OWNERS_PG if postgres else _WAITING_OWNERS_SQLITE
    ranked = sorted(
        (running.get(owner, 0), first_seq, owner, model)
        for model in models
        for owner, first_seq in conn.execute(waiting, {"model": model})
    )
    return [(owner, model) for _running, _seq, owner, model in ranked]
