"""Clients: listing and deleting jobs, webhooks (callback URL, outbox state, signing secrets), and
stage-duration histograms kept as jobs complete (filled here from the jobs completed so far).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from bisect import bisect_left

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The histogram's bucket bounds when this revision was written (a migration stays frozen).
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("callback_url", sa.Text))
    op.add_column("jobs", sa.Column("deleted_at", sa.Float))
    op.add_column("jobs", sa.Column("webhook_state", sa.String(16)))
    op.add_column("jobs", sa.Column("webhook_next_at", sa.Float))
    op.create_index("ix_jobs_owner_seq", "jobs", ["owner", "seq"])
    op.create_index("ix_jobs_webhooks", "jobs", ["webhook_state", "webhook_next_at"])
    op.add_column("api_keys", sa.Column("webhook_secret", sa.String(128)))
    stats = op.create_table(
        "stage_stats",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("stage", sa.String(64), primary_key=True),
        sa.Column("bucket", sa.Integer, primary_key=True),
        sa.Column("samples", sa.BigInteger, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
    )
    op.bulk_insert(stats, _stage_stats_so_far())


def _stage_stats_so_far() -> list[dict[str, object]]:
    jobs = sa.table("jobs", sa.column("model"), sa.column("meta", sa.JSON), sa.column("status"))
    query = sa.select(jobs.c.model, jobs.c.meta).where(jobs.c.status == "completed")
    found: dict[tuple[str, str, int], list[float]] = {}
    for model, meta in op.get_bind().execute(query):
        for stage, seconds in ((meta or {}).get("timings") or {}).items():
            if isinstance(seconds, int | float) and not isinstance(seconds, bool):
                bucket = bisect_left(STAGE_BUCKETS, seconds)
                found.setdefault((model, stage, bucket), []).append(float(seconds))
    return [
        {"model": m, "stage": s, "bucket": b, "samples": len(v), "seconds": sum(v)}
        for (m, s, b), v in found.items()
    ]


def downgrade() -> None:
    op.drop_table("stage_stats")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("webhook_secret")
    op.drop_index("ix_jobs_webhooks", table_name="jobs")
    op.drop_index("ix_jobs_owner_seq", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in ("webhook_next_at", "webhook_state", "deleted_at", "callback_url"):
            batch.drop_column(column)
