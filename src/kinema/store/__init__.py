"""Jobs, API keys and workers in SQL (SQLite or PostgreSQL): the implementation of
kinema.store_protocol.JobStore, and the schema migrations."""

from kinema.store.migrations import head_revision, migrate, schema_status
from kinema.store.sql import SqlJobStore, open_store, open_store_url
from kinema.store_protocol import JobStore, SchemaNotCurrent, SchemaStatus, StoreStats

__all__ = [
    "JobStore",
    "SchemaNotCurrent",
    "SchemaStatus",
    "SqlJobStore",
    "StoreStats",
    "head_revision",
    "migrate",
    "open_store",
    "open_store_url",
    "schema_status",
]
