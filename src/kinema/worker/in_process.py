"""A jobs database and a worker thread in this process, for `kinema generate` without a server:
the caller submits and reads jobs through `services`, as the API would."""

from __future__ import annotations

import threading
from collections.abc import Callable

from kinema.catalog.registry import ModelSpec, get_spec
from kinema.catalog.runner import ClipRunner
from kinema.config import Settings
from kinema.errors import KinemaError
from kinema.service import Services
from kinema.wiring import build_services, served_models
from kinema.worker.runner import Worker, load_engine

OPENING_STORE = "opening the jobs database"
LOADING_LIBRARIES = "loading torch and diffusers"
BUILDING_TINY_MODEL = "building the tiny model (first run only)"
LOADING_MODEL = "loading the model"

PhaseCallback = Callable[[str], None]


def _ignore_phase(_: str) -> None:
    pass


class InProcessWorker:
    """`on_phase` hears what the start is doing (OPENING_STORE, LOADING_LIBRARIES,
    BUILDING_TINY_MODEL, LOADING_MODEL): it takes seconds, and whoever waits should know why."""

    def __init__(self, settings: Settings, on_phase: PhaseCallback = _ignore_phase) -> None:
        self._settings = settings
        self._on_phase = on_phase
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._services: Services | None = None

    def __enter__(self) -> InProcessWorker:
        spec = get_spec(served_models(self._settings)[0])
        self._on_phase(OPENING_STORE)
        self._services = build_services(self._settings)
        try:
            engine = self._load(spec)
        except BaseException:
            self._services.close()
            raise
        services = self._services
        worker = Worker(services.store, services.artifacts, engine, self._settings)
        self._thread = threading.Thread(target=worker.run, args=(self._stop,), daemon=True)
        self._thread.start()
        return self

    def _load(self, spec: ModelSpec) -> ClipRunner:
        self._on_phase(LOADING_LIBRARIES)
        import kinema.engine.pipelines  # noqa: F401  (torch and diffusers: seconds on their own)
        from kinema.engine.components import needs_tiny_build, resolve_weights

        if needs_tiny_build(spec, self._settings):
            self._on_phase(BUILDING_TINY_MODEL)
            resolve_weights(spec, self._settings)  # builds it; loading it is the next phase
        self._on_phase(LOADING_MODEL)
        return load_engine(spec, self._settings)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self._services:
            self._services.close()

    @property
    def services(self) -> Services:
        assert self._services is not None, "use InProcessWorker as a context manager"
        return self._services

    def check_alive(self) -> None:
        """Raise if the worker thread died: whoever waits on its jobs would wait forever."""
        if self._thread is not None and not self._thread.is_alive():
            raise KinemaError("the in-process worker stopped unexpectedly; see the log above")
