"""Wiring: settings, the backends they name and the services over them. It starts nothing (no
process, thread or loop): the API server, the workers and the CLI each build what they need here."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kinema.catalog.registry import ServedModels
from kinema.config import Settings
from kinema.service import JobService, KeyService, QueueLimits, Services, WebhookPolicy
from kinema.storage import ArtifactStore, load_or_create_secret, open_artifact_store
from kinema.store.sql import SqlJobStore, open_store_url


def make_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with the command line's explicit options on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def settings_environment(settings: Settings) -> dict[str, str]:
    """This process's environment, with every setting spelled out as its KINEMA_* variable, so
    that a child process reads exactly `settings` (command-line options included)."""
    names = {f"KINEMA_{name}".upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    for name, value in settings.model_dump(mode="json").items():
        if value is not None:
            env[f"KINEMA_{name}".upper()] = value if isinstance(value, str) else json.dumps(value)
    return env


def served_models(settings: Settings) -> list[str]:
    return [m.strip() for m in settings.model.split(",") if m.strip()]


def open_artifacts(settings: Settings) -> ArtifactStore:
    return open_artifact_store(
        settings.storage or "",
        local_root=settings.artifacts_dir,
        secret=load_or_create_secret(settings.secret_path),
        staging_dir=settings.data_dir / "staging",
    )


def open_backends(settings: Settings) -> tuple[SqlJobStore, ArtifactStore]:
    store = open_store_url(settings.database_url, max_attempts=settings.max_attempts)
    return store, open_artifacts(settings)


@contextmanager
def jobs_database(settings: Settings) -> Iterator[SqlJobStore]:
    """The jobs database alone (SQLite or PostgreSQL, no artifacts), for commands that only read or
    change jobs and keys."""
    store = open_store_url(settings.database_url)
    try:
        yield store
    finally:
        store.close()


def build_services(settings: Settings) -> Services:
    store, artifacts = open_backends(settings)
    served = ServedModels.of(served_models(settings))
    limits = QueueLimits(
        settings.max_queued_per_key, settings.max_queued_total, settings.retry_after_seconds
    )
    webhooks = WebhookPolicy(settings.webhook_url, settings.webhook_allow_private)
    retention = settings.retention_hours * 3600 if settings.retention_hours is not None else None
    jobs = JobService(
        store,
        artifacts,
        served,
        settings.url_ttl_seconds,
        limits,
        webhooks,
        retention,
        settings.max_output_pixels,
        settings.lora_dir,
    )
    return Services(settings, KeyService(store), jobs, artifacts, store)
