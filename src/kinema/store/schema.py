"""The tables as the queries see them. The migrations (store/migrations) create them; keep the
two in step: a change here needs a new revision there."""

from __future__ import annotations

import sqlalchemy as sa

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
    sa.Column("callback_url", sa.Text),
    sa.Column("deleted_at", sa.Float),  # deleted by its owner: hidden from every read
    # Webhook outbox: "pending" until delivered or given up ("delivered" / "failed"); a pending
    # delivery is due at webhook_next_at (a deliverer pushes it on while it is trying).
    sa.Column("webhook_state", sa.String(16)),
    sa.Column("webhook_next_at", sa.Float),
    # Queue order per model, with the owner for the claim's look at the head of the queue
    # (index-only), queue_position and "anything to claim?".
    sa.Index("ix_jobs_queue", "status", "model", "seq", "owner"),
    # Fair claims: the owners with queued work and their oldest job, per model.
    sa.Index("ix_jobs_fair", "status", "model", "owner", "seq"),
    # Running jobs per owner, queued jobs per owner (back-pressure).
    sa.Index("ix_jobs_owner", "status", "owner"),
    # An owner's jobs in submission order (listing and pagination).
    sa.Index("ix_jobs_owner_seq", "owner", "seq"),
    sa.Index("ix_jobs_webhooks", "webhook_state", "webhook_next_at"),
)

# Queued jobs per (model, owner), kept exact by triggers on `jobs` (see migration 0004): the
# back-pressure checks and queue positions read these rows instead of counting the queue.
queue_depth = sa.Table(
    "queue_depth",
    metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("owner", sa.String(64), primary_key=True),
    sa.Column("queued", sa.BigInteger, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("key_hash", sa.String(128), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
    sa.Column("webhook_secret", sa.String(128)),
)

# Stage-duration histograms, added to as jobs complete (see store.base.StageHistogram).
stage_stats = sa.Table(
    "stage_stats",
    metadata,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("stage", sa.String(64), primary_key=True),
    sa.Column("bucket", sa.Integer, primary_key=True),
    sa.Column("samples", sa.BigInteger, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("models", sa.JSON, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
)
