"""Process wiring shared by the CLI's commands: settings, services, workers."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from kinema.config import Settings
from kinema.engine.registry import ServedModels
from kinema.errors import ModelUnavailable
from kinema.service import JobService, KeyService
from kinema.storage.local import LocalArtifactStore, load_or_create_secret
from kinema.store.sql import open_store

logger = logging.getLogger("kinema")

EXIT_MODEL_UNAVAILABLE = 3


def make_settings(**overrides: object) -> Settings:
    """Settings from the environment, with the command line's explicit options on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


def served_models(settings: Settings) -> list[str]:
    return [m.strip() for m in settings.model.split(",") if m.strip()]


@dataclass
class Services:
    settings: Settings
    keys: KeyService
    jobs: JobService
    artifacts: LocalArtifactStore

    def close(self) -> None:
        self.jobs.close()


def build_services(settings: Settings) -> Services:
    store = open_store(settings.database_path, max_attempts=settings.max_attempts)
    artifacts = LocalArtifactStore(
        settings.artifacts_dir, load_or_create_secret(settings.secret_path)
    )
    jobs = JobService(
        store, artifacts, ServedModels.of(served_models(settings)), settings.url_ttl_seconds
    )
    return Services(settings, KeyService(store), jobs, artifacts)


def run_worker(settings: Settings, stop: threading.Event) -> int:
    """Load the model once, then process jobs until `stop` is set. Returns an exit code."""
    from kinema.engine.registry import get_spec
    from kinema.worker import Worker, load_engine

    model = served_models(settings)[0]
    try:
        engine = load_engine(get_spec(model), settings)
    except ModelUnavailable as exc:
        logger.error("cannot serve %s: %s", model, exc)
        return EXIT_MODEL_UNAVAILABLE
    store = open_store(settings.database_path, max_attempts=settings.max_attempts)
    storage = LocalArtifactStore(
        settings.artifacts_dir, load_or_create_secret(settings.secret_path)
    )
    storage.sweep_staging()
    try:
        Worker(store, storage, engine, settings).run(stop)
    finally:
        store.close()
    return 0


def stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        logger.info("signal %d: finishing the current job, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


class WorkerSupervisor:
    """Runs worker processes beside the API and restarts any that die (its job is requeued)."""

    def __init__(self, settings: Settings, count: int) -> None:
        self._settings = settings
        self._count = count
        self._stop = threading.Event()
        self._processes: dict[int, subprocess.Popen[bytes]] = {}
        self._threads = [
            threading.Thread(target=self._keep_running, args=(slot,), daemon=True)
            for slot in range(count)
        ]

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "KINEMA_DATA_DIR": str(self._settings.data_dir),
            "KINEMA_MODEL": self._settings.model,
        }
        return subprocess.Popen([sys.executable, "-m", "kinema", "worker"], env=env)

    def _keep_running(self, slot: int) -> None:
        while not self._stop.is_set():
            process = self._processes[slot] = self._spawn()
            code = process.wait()
            if self._stop.is_set():
                return
            if code == EXIT_MODEL_UNAVAILABLE:
                logger.error("worker %d cannot load its model; not restarting it", slot)
                return
            logger.warning("worker %d exited with %s; restarting", slot, code)
            self._stop.wait(1.0)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, grace_seconds: float = 30.0) -> None:
        self._stop.set()
        for process in self._processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace_seconds
        for process in self._processes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
