"""An in-process store + worker, for `kinema generate` without a server."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from kinema.api.schemas import render_generation
from kinema.api.v2 import parse_create_body
from kinema.client import Generation, ProgressCallback
from kinema.config import Settings
from kinema.domain import ApiKey
from kinema.engine.registry import get_spec
from kinema.errors import NotFound
from kinema.runtime import Services, build_services, served_models
from kinema.worker import Worker, load_engine

LOCAL_OWNER = ApiKey(id="local", name="local", created_at=0.0)


class EmbeddedRunner:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._services: Services | None = None

    def __enter__(self) -> EmbeddedRunner:
        engine = load_engine(get_spec(served_models(self._settings)[0]), self._settings)
        self._services = build_services(self._settings)
        store = self._services.jobs.store
        worker = Worker(store, self._services.artifacts, engine, self._settings)
        self._thread = threading.Thread(target=worker.run, args=(self._stop,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self._services:
            self._services.close()

    @property
    def services(self) -> Services:
        assert self._services is not None, "use EmbeddedRunner as a context manager"
        return self._services

    def submit(self, prompt: str, model: str, options: dict[str, Any]) -> str:
        body = parse_create_body({"model": model, "prompt": prompt, **options})
        return self.services.jobs.submit(LOCAL_OWNER, body.to_request()).id

    def get(self, job_id: str) -> Generation:
        view = self.services.jobs.get(LOCAL_OWNER, job_id, base_url="")
        return Generation.from_json(render_generation(view))

    def wait(
        self, job_id: str, timeout: float, on_progress: ProgressCallback | None = None
    ) -> Generation:
        deadline = time.monotonic() + timeout
        while True:
            generation = self.get(job_id)
            if on_progress:
                on_progress(generation)
            if generation.done:
                return generation
            if time.monotonic() >= deadline:
                raise TimeoutError(f"generation {job_id} not done after {timeout} s")
            time.sleep(0.2)

    def artifact_path(self, job_id: str) -> Path:
        job = self.services.jobs.store.get_job(job_id)
        if job is None or job.artifact is None:
            raise NotFound(f"generation {job_id} has no video")
        return self.services.artifacts.path_for(job.artifact.key)
