"""Jobs, API keys and workers: the `JobStore` interface, its SQL implementation (SQLite and
PostgreSQL), an in-memory fake, and schema migrations."""

from kinema.store.base import JobStore, SchemaNotCurrent, SchemaStatus, StoreStats
from kinema.store.memory import MemoryJobStore
from kinema.store.migrations import head_revision, migrate, schema_status
from kinema.store.sql import SqlJobStore, open_store, open_store_url

__all__ = [
    "JobStore",
    "MemoryJobStore",
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
