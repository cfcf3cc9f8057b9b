"""Scale-out: worker liveness, and indexes for fair claims and per-owner counts.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
    )
    op.create_index("ix_jobs_queue", "jobs", ["status", "model", "seq", "owner"])
    op.drop_index("ix_jobs_claim", table_name="jobs")  # a prefix of ix_jobs_queue
    op.create_index("ix_jobs_fair", "jobs", ["status", "model", "owner", "seq"])
    op.create_index("ix_jobs_owner", "jobs", ["status", "owner"])


def downgrade() -> None:
    op.drop_index("ix_jobs_owner", table_name="jobs")
    op.drop_index("ix_jobs_fair", table_name="jobs")
    op.create_index("ix_jobs_claim", "jobs", ["status", "model", "seq"])
    op.drop_index("ix_jobs_queue", table_name="jobs")
    op.drop_table("workers")
