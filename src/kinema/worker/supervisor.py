"""Worker processes: the job loop of one process (`kinema worker`), and the supervisor that runs
and restarts them beside the API (`kinema serve`)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from kinema.catalog.runner import ClipRunner
from kinema.config import Settings
from kinema.errors import ModelUnavailable
from kinema.wiring import open_backends, served_models, settings_environment

logger = logging.getLogger("kinema")

EXIT_MODEL_UNAVAILABLE = 3


def run_worker(settings: Settings, stop: threading.Event) -> int:
    """Load the model once, then process jobs until `stop` is set. Returns an exit code."""
    from kinema.catalog.registry import get_spec
    from kinema.worker.runner import load_engine

    model = served_models(settings)[0]
    try:
        engine = load_engine(get_spec(model), settings)
    except ModelUnavailable as exc:
        logger.error("cannot serve %s: %s", model, exc)
        return EXIT_MODEL_UNAVAILABLE
    return serve_engine(engine, settings, stop)


def serve_engine(engine: ClipRunner, settings: Settings, stop: threading.Event) -> int:
    """With the model loaded: warm up, then process jobs until `stop` is set."""
    from kinema.worker.runner import Worker

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
    """Runs worker processes beside the API, `count` for each served model, and restarts any
    that die (their job is requeued). Each loads one model and claims only that model's jobs.

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
        self._models = [model for model in served_models(settings) for _ in range(count)]
        self._threads = [
            threading.Thread(target=self._keep_running, args=(slot,), daemon=True)
            for slot in range(len(self._models))
        ]
        self.fatal = False

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._processes.values() if p.poll() is None]

    def _spawn(self, slot: int) -> subprocess.Popen[bytes] | None:
        env = settings_environment(self._settings.model_copy(update={"model": self._models[slot]}))
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
                logger.error(
                    "worker %d cannot load %s; stopping the server", slot, self._models[slot]
                )
                self.fatal = True
                if self._on_fatal:
                    self._on_fatal()
                return
            logger.warning(
                "worker %d (%s) exited with %s; restarting it", slot, self._models[slot], code
            )
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
