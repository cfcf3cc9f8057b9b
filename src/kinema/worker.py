"""The worker: claim → plan → generate → encode → store → complete, with a lease kept alive.

The model is loaded once and stays warm between jobs. A job is finished only under a current
lease, so a worker that lost its lease (it was presumed dead) discards its work.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from kinema.config import Settings
from kinema.domain import Clip, Lease, VideoArtifact
from kinema.engine.plan import GenerationPlan, plan_generation
from kinema.engine.registry import ModelSpec, get_spec
from kinema.errors import GenerationCanceled, LeaseLost
from kinema.storage.base import ArtifactStore
from kinema.store.base import JobStore

if TYPE_CHECKING:
    from kinema.engine.pipelines import Engine

logger = logging.getLogger("kinema.worker")

DENOISE_SHARE = 90.0  # progress % reached when the last denoising step is done
ENCODING_PROGRESS = 92.0
ERROR_BACKOFF_SECONDS = 2.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def load_engine(spec: ModelSpec, settings: Settings) -> Engine:
    from kinema.engine.pipelines import load_engine as load  # torch is imported only here

    return load(spec, settings)


@dataclass
class Timings:
    stages: dict[str, float] = field(default_factory=dict)

    def measure(self, stage: str, start: float) -> None:
        self.stages[stage] = round(time.perf_counter() - start, 3)


class JobRun:
    """One claimed job: heartbeats, throttled progress reports, cancellation."""

    def __init__(
        self, store: JobStore, lease: Lease, settings: Settings, shutting_down: threading.Event
    ) -> None:
        self.store = store
        self.lease = lease
        self._settings = settings
        self._shutting_down = shutting_down
        self._lock = threading.Lock()
        self._last_report = 0.0
        self._stop = threading.Event()
        self.lost = False
        self.canceled = False
        self._heartbeat = threading.Thread(target=self._beat, daemon=True, name="heartbeat")

    def __enter__(self) -> JobRun:
        self._heartbeat.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._heartbeat.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._settings.heartbeat_interval):
            try:
                with self._lock:
                    self.lease = self.store.heartbeat(self.lease, self._settings.lease_seconds)
            except LeaseLost:
                self.lost = True
                return
            except Exception:
                logger.exception("heartbeat failed; retrying")

    def report(self, progress: float, stage: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < self._settings.progress_min_interval:
            return
        self._last_report = now
        try:
            with self._lock:
                self.canceled = self.store.report_progress(self.lease, progress, stage)
        except LeaseLost:
            self.lost = True

    def on_step(self, done: int, total: int) -> None:
        self.report(DENOISE_SHARE * done / total, f"denoising {done}/{total}", force=done == total)

    def should_stop(self) -> bool:
        return self.lost or self.canceled or self._shutting_down.is_set()


class Worker:
    def __init__(
        self,
        store: JobStore,
        storage: ArtifactStore,
        engine: Engine,
        settings: Settings,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.storage = storage
        self.engine = engine
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self.stopping = threading.Event()

    def run(self, stop: threading.Event) -> None:
        """Process jobs until `stop` is set; a job running then is given back to the queue."""
        logger.info("worker %s serving %s", self.worker_id, self.engine.spec.id)
        self.stopping = stop
        while not stop.is_set():
            try:
                worked = self.run_once()
            except Exception:  # e.g. the database is briefly unreachable: keep serving
                logger.exception("worker %s: cannot claim a job; retrying", self.worker_id)
                stop.wait(ERROR_BACKOFF_SECONDS)
                continue
            if not worked:
                stop.wait(self.settings.poll_seconds)

    def run_once(self) -> bool:
        """Claim and process one job; False if there was nothing to do."""
        lease = self.store.claim([self.engine.spec.id], self.worker_id, self.settings.lease_seconds)
        if lease is None:
            return False
        with JobRun(self.store, lease, self.settings, self.stopping) as run:
            self._process(run)
        return True

    def _process(self, run: JobRun) -> None:
        timings = Timings()
        job = run.lease.job
        meta: dict[str, Any] = {"timings": timings.stages}
        try:
            plan = self._plan(run)
            meta["notes"] = list(plan.notes)
            meta["generated"] = {
                "width": plan.width,
                "height": plan.height,
                "frames": plan.num_frames,
            }
            clip = self._generate(run, plan, timings)
            artifact = self._encode_and_store(run, plan, clip, timings)
            self._finish(run, artifact, meta)
        except GenerationCanceled:
            self._end(run, self.store.mark_canceled if run.canceled else self.store.release)
        except LeaseLost:
            logger.warning("job %s: lease lost; another worker owns it now", job.id)
        except Exception as exc:
            logger.exception("job %s failed", job.id)
            message = f"{type(exc).__name__}: {exc}"
            self._end(run, lambda lease: self.store.fail(lease, "GenerationFailed", message, meta))

    def _plan(self, run: JobRun) -> GenerationPlan:
        job = run.lease.job
        plan = plan_generation(job.request, get_spec(job.request.model), job.request.seed or 0)
        if self.settings.steps:
            plan = replace(plan, num_inference_steps=self.settings.steps)
        logger.info("job %s: %s frames at %dx%d", job.id, plan.num_frames, plan.width, plan.height)
        return plan

    def _end(self, run: JobRun, finish: Callable[[Lease], None]) -> None:
        try:
            finish(run.lease)
        except LeaseLost:
            logger.warning("job %s: lease lost before it could be ended", run.lease.job.id)

    def _generate(self, run: JobRun, plan: GenerationPlan, timings: Timings) -> Clip:
        run.report(0.0, "denoising", force=True)
        start = time.perf_counter()
        clip = self.engine.generate(plan, run.on_step, run.should_stop)
        timings.measure("generate", start)
        clip = replace(clip, frames=clip.frames[: plan.output_frames])
        if run.lost:
            raise LeaseLost(f"job {run.lease.job.id}: lease lost while generating")
        if run.should_stop():
            raise GenerationCanceled(run.lease.job.id)
        return clip

    def _encode_and_store(
        self, run: JobRun, plan: GenerationPlan, clip: Clip, timings: Timings
    ) -> VideoArtifact:
        from kinema.media import encode_mp4

        run.report(ENCODING_PROGRESS, "encoding", force=True)
        start = time.perf_counter()
        staging = self.storage.staging_path(".mp4")
        try:
            info = encode_mp4(clip, staging, size=(plan.output_width, plan.output_height))
            timings.measure("encode", start)
            start = time.perf_counter()
            key = f"{run.lease.job.id}/{run.lease.token}.mp4"
            size = self.storage.put(key, staging)
            timings.measure("store", start)
        finally:
            staging.unlink(missing_ok=True)
        return VideoArtifact(
            key=key,
            file_name=f"{run.lease.job.id}.mp4",
            file_size=size,
            duration=round(info.duration, 3),
            width=info.width,
            height=info.height,
            fps=plan.fps,
            has_audio=info.has_audio,
        )

    def _finish(self, run: JobRun, artifact: VideoArtifact, meta: dict[str, Any]) -> None:
        try:
            self.store.complete(run.lease, artifact, meta)
        except LeaseLost:
            self.storage.delete(artifact.key)  # another worker owns the job: leave no orphan
            raise
        logger.info("job %s completed: %s", run.lease.job.id, meta["timings"])
