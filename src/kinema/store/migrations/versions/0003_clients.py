"""Clients: listing and deleting jobs, webhooks (callback URL, outbox state, signing secrets).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("callback_url", sa.Text))
    op.add_column("jobs", sa.Column("deleted_at", sa.Float))
    op.add_column("jobs", sa.Column("webhook_state", sa.String(16)))
    op.add_column("jobs", sa.Column("webhook_next_at", sa.Float))
    op.create_index("ix_jobs_owner_seq", "jobs", ["owner", "seq"])
    op.create_index("ix_jobs_webhooks", "jobs", ["webhook_state", "webhook_next_at"])
    op.add_column("api_keys", sa.Column("webhook_secret", sa.String(128)))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("webhook_secret")
    op.drop_index("ix_jobs_webhooks", table_name="jobs")
    op.drop_index("ix_jobs_owner_seq", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in ("webhook_next_at", "webhook_state", "deleted_at", "callback_url"):
            batch.drop_column(column)
