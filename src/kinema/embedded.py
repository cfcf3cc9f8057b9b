"""An in-process store + worker, for `kinema generate` without a server."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from kinema.api.schemas import render_generation
from kinema.api.v2 import parse_create_body
from kinema.client import Generation, ProgressCallback, poll_until_done
from kinema.config import Settings
from kinema.domain import ApiKey
from kinema.engine.registry import get_spec
from kinema.errors import KinemaError, NotFound
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

    def submit(self, prompt: str, options: dict[str, Any]) -> str:
        model = served_models(self._settings)[0]
        body = parse_create_body({"model": model, "prompt": prompt, **options})
        return self.services.jobs.submit(LOCAL_OWNER, body.to_request()).id

    def get(self, job_id: str) -> Generation:
        view = self.services.jobs.get(LOCAL_OWNER, job_id, base_url="")
        return Generation.from_json(render_generation(view))

    def wait(
        self, job_id: str, timeout: float, on_progress: ProgressCallback | None = None
    ) -> Generation:
        return poll_until_done(
            lambda: self._get_while_working(job_id),
            poll_interval=0.2,
            timeout=timeout,
            on_progress=on_progress,
        )

    def _get_while_working(self, job_id: str) -> Generation:
        if self._thread is not None and not self._thread.is_alive():
            raise KinemaError("the in-process worker stopped unexpectedly; see the log above")
        return self.get(job_id)

    def save(self, generation: Generation, output: Path) -> None:
        job = self.services.jobs.store.get_job(generation.id)
        if job is None or job.artifact is None:
            raise NotFound(f"generation {generation.id} has no video")
        self.services.artifacts.download_to(job.artifact.key, output)
