"""Jobs and API keys: the `JobStore` interface and its SQL implementation."""

from kinema.store.base import JobStore
from kinema.store.sql import SqlJobStore, open_store

__all__ = ["JobStore", "SqlJobStore", "open_store"]
