"""Process wiring shared by the CLI's commands: settings, services, workers."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kinema.config import Settings
from kinema.engine.registry import ServedModels
from kinema.errors import ModelUnavailable
from kinema.service import JobService, KeyService, QueueLimits, WebhookPolicy
from kinema.storage import ArtifactStore, load_or_create_secret, open_artifact_store
from kinema.store.sql import SqlJobStore, open_store_url

if TYPE_CHECKING:
    from kinema.engine.pipelines import Engine

logger = logging.getLogger("kinema")

EXIT_MODEL_UNAVAILABLE = 3


def make_settings(**overrides: object) -> Settings:
    """Settings from the environment, with the command line's explicit options on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


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


@dataclass
class Services:
    settings: Settings
    keys: KeyService
    jobs: JobService
    artifacts: ArtifactStore

    def close(self) -> None:
        self.jobs.close()


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
def local_store(settings: Settings) -> Iterator[SqlJobStore]:
    """The jobs database alone (no artifacts), for commands that only read or change jobs/keys."""
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
        store, artifacts, served, settings.url_ttl_seconds, limits, webhooks, retention
    )
    return Services(settings, KeyService(store), jobs, artifacts)


def run_worker(settings: Settings, stop: threading.Event) -> int:
    """Load the model once, then process jobs until `stop` is set. Returns an exit code."""
    from kinema.engine.registry import get_spec
    from kinema.worker import load_engine

    model = served_models(settings)[0]
    try:
        engine = load_engine(get_spec(model), settings)
    except ModelUnavailable as exc:
        logger.error("cannot serve %s: %s", model, exc)
        return EXIT_MODEL_UNAVAILABLE
    return serve_engine(engine, settings, stop)


def serve_engine(engine: Engine, settings: Settings, stop: threading.Event) -> int:
    """With the model loaded: warm up, then process jobs until `stop` is set."""
    from kinema.worker import Worker

    if engine.features.get("compile", "off") != "off":
        engine.warm_up(seconds=5.0)  # compile now, at the shape real jobs have, not on job one
    store, artifacts = open_backends(settings)
    artifacts.sweep_staging()
    try:
        Worker(store, artifacts, engine, settings).run(stop)
    finally:
        store.close()
    return 0


def stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        logger.info("signal %d: finishing the current job, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def stop_when_orphaned(stop: threading.Event, interval: float = 1.0) -> None:
    """Set `stop` once this process's parent is gone (a supervised worker outlives no server)."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(interval):
            if os.getppid() != parent:
                logger.warning("the server that started this worker is gone; stopping")
                stop.set()

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


class WorkerSupervisor:
    """Runs worker processes beside the API and restarts any that die (their job is requeued).

    A worker that cannot load its model is not restarted: `on_fatal` is called instead.
    """

    def __init__(
        self,
        settings: Settings,
        count: int,
        on_fatal: Callable[[], None] | None = None,
        log_level: str = "info",
    ) -> None:
        self._settings = settings
        self._on_fatal = on_fatal
        self._log_level = log_level
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._processes: dict[int, subprocess.Popen[bytes]] = {}
        self._threads = [
            threading.Thread(target=self._keep_running, args=(slot,), daemon=True)
            for slot in range(count)
        ]
        self.fatal = False

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._processes.values() if p.poll() is None]

    def _spawn(self, slot: int) -> subprocess.Popen[bytes] | None:
        env = settings_environment(self._settings)
        command = [
            *(sys.executable, "-m", "kinema", "worker", "--exit-with-parent"),
            *("--log-level", self._log_level),
        ]
        with self._lock:
            if self._stop.is_set():
                return None
            process = self._processes[slot] = subprocess.Popen(command, env=env)
        return process

    def _keep_running(self, slot: int) -> None:
        while (process := self._spawn(slot)) is not None:
            code = process.wait()
            if self._stop.is_set():
                return
            if code == EXIT_MODEL_UNAVAILABLE:
                logger.error("worker %d cannot load its model; stopping the server", slot)
                self.fatal = True
                if self._on_fatal:
                    self._on_fatal()
                return
            logger.warning("worker %d exited with %s; restarting it", slot, code)
            self._stop.wait(1.0)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, grace_seconds: float = 30.0) -> None:
        """Ask every worker to finish or give back its job, then kill what is left."""
        with self._lock:
            self._stop.set()
            processes = list(self._processes.values())
        for process in processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace_seconds
        for process in processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
