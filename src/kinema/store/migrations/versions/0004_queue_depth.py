"""Queue depth: the queued jobs per (model, owner), kept by triggers on `jobs`, so back-pressure
checks and queue positions read a few counter rows instead of counting a deep queue.

Triggers, rather than the store's code, keep the counts, so every path that moves a job into or
out of `queued` is counted alike on both databases: create, claim, cancel, lease expiry, retry,
delete, purge, an operator's own SQL, and PostgreSQL's TRUNCATE.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COUNT_FROM_JOBS = """
INSERT INTO queue_depth (model, owner, queued)
SELECT model, owner, count(*) FROM jobs WHERE status = 'queued' GROUP BY model, owner
"""

_SQLITE_BUMP = """
INSERT INTO queue_depth (model, owner, queued) VALUES ({row}.model, {row}.owner, {delta})
ON CONFLICT (model, owner) DO UPDATE SET queued = queued + {delta}
"""

_SQLITE_TRIGGERS = {
    "jobs_queue_depth_insert": (
        "AFTER INSERT ON jobs WHEN NEW.status = 'queued'",
        _SQLITE_BUMP.format(row="NEW", delta=1),
    ),
    "jobs_queue_depth_leave": (
        "AFTER UPDATE OF status ON jobs WHEN OLD.status = 'queued' AND NEW.status != 'queued'",
        _SQLITE_BUMP.format(row="OLD", delta=-1),
    ),
    "jobs_queue_depth_return": (
        "AFTER UPDATE OF status ON jobs WHEN OLD.status != 'queued' AND NEW.status = 'queued'",
        _SQLITE_BUMP.format(row="NEW", delta=1),
    ),
    "jobs_queue_depth_delete": (
        "AFTER DELETE ON jobs WHEN OLD.status = 'queued'",
        _SQLITE_BUMP.format(row="OLD", delta=-1),
    ),
}

_POSTGRES_FUNCTION = """
CREATE FUNCTION kinema_queue_depth() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM queue_depth;
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'queued' THEN
        INSERT INTO queue_depth (model, owner, queued) VALUES (OLD.model, OLD.owner, -1)
        ON CONFLICT (model, owner) DO UPDATE SET queued = queue_depth.queued - 1;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status = 'queued' THEN
        INSERT INTO queue_depth (model, owner, queued) VALUES (NEW.model, NEW.owner, 1)
        ON CONFLICT (model, owner) DO UPDATE SET queued = queue_depth.queued + 1;
    END IF;
    RETURN NULL;
END
$$
"""

_POSTGRES_TRIGGERS = (
    "CREATE TRIGGER jobs_queue_depth_insert AFTER INSERT ON jobs FOR EACH ROW "
    "WHEN (NEW.status = 'queued') EXECUTE FUNCTION kinema_queue_depth()",
    "CREATE TRIGGER jobs_queue_depth_update AFTER UPDATE OF status ON jobs FOR EACH ROW "
    "WHEN (OLD.status IS DISTINCT FROM NEW.status AND 'queued' IN (OLD.status, NEW.status)) "
    "EXECUTE FUNCTION kinema_queue_depth()",
    "CREATE TRIGGER jobs_queue_depth_delete AFTER DELETE ON jobs FOR EACH ROW "
    "WHEN (OLD.status = 'queued') EXECUTE FUNCTION kinema_queue_depth()",
    "CREATE TRIGGER jobs_queue_depth_truncate AFTER TRUNCATE ON jobs FOR EACH STATEMENT "
    "EXECUTE FUNCTION kinema_queue_depth()",
)


def upgrade() -> None:
    op.create_table(
        "queue_depth",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("queued", sa.BigInteger, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # No job may change between the triggers' start and the count.
        op.execute("LOCK TABLE jobs IN SHARE MODE")
        op.execute(_POSTGRES_FUNCTION)
        for statement in _POSTGRES_TRIGGERS:
            op.execute(statement)
    else:
        for name, (when, action) in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {when} BEGIN {action}; END")
    op.execute(_COUNT_FROM_JOBS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION kinema_queue_depth() CASCADE")  # and its triggers
    else:
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("queue_depth")
