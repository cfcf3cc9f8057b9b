"""The worker: claim → plan → generate → encode → store → complete, with a lease kept alive.

The model is loaded once and stays warm between jobs. A job is finished only under a current
lease, so a worker that lost its lease (it was presumed dead) discards its work.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from kinema.catalog.plan import ConditionPlan, GenerationPlan, plan_generation
from kinema.catalog.registry import ModelSpec, get_spec
from kinema.catalog.runner import ClipRunner
from kinema.config import Settings
from kinema.domain import Clip, Lease, VideoArtifact
from kinema.errors import GenerationCanceled, LeaseLost, NotFound
from kinema.storage.base import ArtifactStore, remove_job_artifacts
from kinema.store_protocol import JobStore

logger = logging.getLogger("kinema.worker")

# An absolute file path in an error's text (a URL's path is not one: it follows "//host").
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s'\"/:,;()]+/?)+")
DENOISE_SHARE = 90.0  # progress % reached when the last denoising step is done
ENCODING_PROGRESS = 92.0
ERROR_BACKOFF_SECONDS = 2.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def load_engine(spec: ModelSpec, settings: Settings) -> ClipRunner:
    """`spec` loaded by its family's engine (torch is imported only here)."""
    from kinema.engine.families import load_model

    runner: ClipRunner = load_model(spec, settings)
    return runner


@dataclass
class Timings:
    stages: dict[str, float] = field(default_factory=dict)

    def measure(self, stage: str, start: float) -> None:
        self.stages[stage] = round(time.perf_counter() - start, 3)


class JobRun:
    """One claimed job: heartbeats, throttled progress reports, cancellation."""

    def __init__(
        self,
        store: JobStore,
        lease: Lease,
        settings: Settings,
        shutting_down: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.lease = lease
        self._settings = settings
        self._shutting_down = shutting_down
        self._clock = clock  # paces the progress reports
        self._lock = threading.Lock()
        self._last_report = 0.0
        self._stop = threading.Event()
        self.lost = False
        self.canceled = False
        self._heartbeat = threading.Thread(target=self._beat, daemon=True, name="heartbeat")

    def start(self) -> JobRun:
        self._heartbeat.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._heartbeat.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._settings.heartbeat_interval):
            try:
                with self._lock:
                    self.lease = self.store.heartbeat(self.lease, self._settings.lease_seconds)
                    self.store.worker_seen(self.lease.worker_id)
            except LeaseLost:
                self.lost = True
                return
            except Exception:
                logger.exception("heartbeat failed; retrying")

    def report(self, progress: float, stage: str, force: bool = False) -> None:
        now = self._clock()
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


@dataclass
class JobWork:
    """What one job carries from its generation to its end."""

    run: JobRun
    timings: Timings = field(default_factory=Timings)
    meta: dict[str, Any] = field(default_factory=dict)
    plan: GenerationPlan | None = None
    clip: Clip | None = None
    # The job's input clips by key, decoded once: an extension conditions on its source's last
    # frames and then plays the whole source first.
    sources: dict[str, Clip] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.meta["timings"] = self.timings.stages

    @property
    def job_id(self) -> str:
        return self.run.lease.job.id


def public_error_message(exc: BaseException) -> str:
    """What a job's owner is told of a failure: its kind and cause, never the server's paths
    (the full detail is in the worker's log)."""
    if isinstance(exc, OSError) and exc.strerror:
        detail = exc.strerror  # without the file names OSError adds to its text
    else:
        detail = ABSOLUTE_PATH.sub("<path>", str(exc))
    return f"{type(exc).__name__}: {detail}"


class Worker:
    """Runs jobs one after another; job N's encode and upload overlap job N+1's denoising."""

    def __init__(
        self,
        store: JobStore,
        storage: ArtifactStore,
        engine: ClipRunner,
        settings: Settings,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.storage = storage
        self.engine = engine
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self._clock = clock
        self.stopping = threading.Event()
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finish")
        self._finishing: Future[None] | None = None

    def run(self, stop: threading.Event) -> None:
        """Process jobs until `stop` is set; a job running then is given back to the queue."""
        logger.info("worker %s serving %s", self.worker_id, self.engine.spec.id)
        self.stopping = stop
        models = [self.engine.spec.id]
        self.store.register_worker(self.worker_id, models)
        try:
            while not stop.is_set():
                try:
                    self.store.worker_seen(self.worker_id)
                    worked = self._start_next()
                except Exception:  # e.g. the database is briefly unreachable: keep serving
                    logger.exception("worker %s: cannot claim a job; retrying", self.worker_id)
                    stop.wait(ERROR_BACKOFF_SECONDS)
                    continue
                if not worked:
                    self.store.wait_for_work(models, self.settings.idle_wait_seconds)
        finally:
            self.drain()
            self.store.forget_worker(self.worker_id)

    def run_once(self) -> bool:
        """Claim and process one job to its end; False if there was nothing to do."""
        started = self._start_next()
        self.drain()
        return started

    def drain(self) -> None:
        """Wait until the job being encoded in the background has ended."""
        if self._finishing is not None:
            self._finishing.result()
            self._finishing = None

    def _start_next(self) -> bool:
        """Claim a job and generate it; its encode and upload then go on in the background."""
        lease = self.store.claim([self.engine.spec.id], self.worker_id, self.settings.lease_seconds)
        if lease is None:
            return False
        work = JobWork(JobRun(self.store, lease, self.settings, self.stopping, self._clock).start())
        if not self._guarded(work, self._generate):
            work.run.close()
            return True
        self.drain()  # at most one clip waits for its encode: memory stays bounded
        self._finishing = self._finisher.submit(self._finish_in_background, work)
        return True

    def _finish_in_background(self, work: JobWork) -> None:
        try:
            self._guarded(work, self._encode_store_complete)
        finally:
            work.run.close()

    def _guarded(self, work: JobWork, step: Callable[[JobWork], None]) -> bool:
        """Run one phase of a job; on any failure end the job accordingly. True if it went on."""
        run = work.run
        try:
            step(work)
            return True
        except GenerationCanceled:
            self._end(run, self.store.mark_canceled if run.canceled else self.store.release)
        except LeaseLost:
            logger.warning("job %s: lease lost; another worker owns it now", work.job_id)
        except Exception as exc:
            logger.exception("job %s failed", work.job_id)
            message = public_error_message(exc)
            meta = work.meta
            self._end(run, lambda lease: self.store.fail(lease, "GenerationFailed", message, meta))
        return False

    def _plan(self, work: JobWork) -> GenerationPlan:
        job = work.run.lease.job
        spec = get_spec(job.request.model)
        plan = plan_generation(job.request, spec, job.request.seed or 0, self.settings.steps)
        logger.info("job %s: %s frames at %dx%d", job.id, plan.num_frames, plan.width, plan.height)
        return self._with_inputs(plan, work.sources)

    def _with_inputs(self, plan: GenerationPlan, sources: dict[str, Clip]) -> GenerationPlan:
        """The plan with its conditions' pixels, read from the artifact store."""
        conditions = tuple(self._read(c, plan, sources) for c in plan.conditions)
        return replace(plan, conditions=conditions)

    def _read(
        self, condition: ConditionPlan, plan: GenerationPlan, sources: dict[str, Clip]
    ) -> ConditionPlan:
        """A condition's frames, fitted to the clip and padded to the generated canvas."""
        from kinema.media import decode_image, fit_to_canvas

        if condition.kind == "video":
            frames = self._source(condition.key, sources).frames[-condition.clip_frames :]
        else:
            frames = decode_image(self._input_bytes(condition.key))
        output, canvas = (plan.output_width, plan.output_height), (plan.width, plan.height)
        return replace(condition, pixels=fit_to_canvas(frames, output, canvas))

    def _source(self, key: str, sources: dict[str, Clip]) -> Clip:
        from kinema.media import decode_clip

        if key not in sources:
            sources[key] = decode_clip(self._input_bytes(key))
        return sources[key]

    def _input_bytes(self, key: str) -> bytes:
        try:
            return b"".join(self.storage.iter_bytes(key))
        except NotFound:
            raise NotFound(
                "an input of this job (an image or a source video) was deleted"
            ) from None

    def _continued(self, plan: GenerationPlan, generated: Clip, sources: dict[str, Clip]) -> Clip:
        """The clip a continuation follows, then the generated frames after the overlap."""
        from kinema.media import center_crop, join_clips

        assert plan.continues is not None
        source = self._source(plan.continues, sources)
        skip = plan.overlap_frames
        frames = center_crop(generated.frames[skip:], plan.output_width, plan.output_height)
        audio = generated.audio
        if audio is not None:
            audio = audio[:, round(skip / plan.fps * generated.sample_rate) :]
        return join_clips(source, replace(generated, frames=frames, audio=audio))

    def _end(self, run: JobRun, finish: Callable[[Lease], None]) -> None:
        try:
            finish(run.lease)
        except LeaseLost:
            logger.warning("job %s: lease lost before it could be ended", run.lease.job.id)

    def _generate(self, work: JobWork) -> None:
        run = work.run
        plan = work.plan = self._plan(work)
        work.meta["notes"] = list(plan.notes)
        work.meta["generated"] = {
            "width": plan.width,
            "height": plan.height,
            "frames": plan.num_frames,
        }
        run.report(0.0, "denoising", force=True)
        start = time.perf_counter()
        clip = self.engine.generate(plan, run.on_step, run.should_stop)
        work.timings.measure("generate", start)
        work.timings.stages.update(self.engine.last_timings)
        if run.lost:
            raise LeaseLost(f"job {work.job_id}: lease lost while generating")
        if run.should_stop():
            raise GenerationCanceled(work.job_id)
        if clip.prompt_used is not None:
            work.meta["prompt_used"] = clip.prompt_used
        if plan.loras:
            work.meta["loras"] = [lora.to_dict() for lora in plan.loras]
        clip = replace(clip, frames=clip.frames[: plan.output_frames])
        work.clip = self._continued(plan, clip, work.sources) if plan.continues else clip
        work.sources.clear()  # the frames can be freed before the encode

    def _encode_store_complete(self, work: JobWork) -> None:
        assert work.plan is not None and work.clip is not None
        artifact = self._encode_and_store(work.run, work.plan, work.clip, work.timings)
        work.clip = None  # the frames can be freed before the next clip arrives
        self._complete(work.run, artifact, work.meta)

    def _encode_and_store(
        self, run: JobRun, plan: GenerationPlan, clip: Clip, timings: Timings
    ) -> VideoArtifact:
        from kinema.media import center_crop, encode_mp4, encode_spritesheet, encode_thumbnail

        run.report(ENCODING_PROGRESS, "encoding", force=True)
        start = time.perf_counter()
        staging = self.storage.staging_path(".mp4")
        still = self.storage.staging_path(".jpg")
        sprites = self.storage.staging_path(".jpg")
        output_size = (plan.output_width, plan.output_height)
        stem = f"{run.lease.job.id}/{run.lease.token}"
        try:
            info = encode_mp4(clip, staging, size=output_size)
            middle = clip.frames[len(clip.frames) // 2]
            encode_thumbnail(center_crop(middle, *output_size), still)
            encode_spritesheet(center_crop(clip.frames, *output_size), sprites)
            timings.measure("encode", start)
            start = time.perf_counter()
            size = self.storage.put(f"{stem}.mp4", staging)
            self.storage.put(f"{stem}.jpg", still)
            self.storage.put(f"{stem}-sprites.jpg", sprites)
            timings.measure("store", start)
        finally:
            for path in (staging, still, sprites):
                path.unlink(missing_ok=True)
        return VideoArtifact(
            key=f"{stem}.mp4",
            thumbnail_key=f"{stem}.jpg",
            spritesheet_key=f"{stem}-sprites.jpg",
            file_name=f"{run.lease.job.id}.mp4",
            file_size=size,
            duration=round(info.duration, 3),
            width=info.width,
            height=info.height,
            fps=plan.fps,
            has_audio=info.has_audio,
        )

    def _complete(self, run: JobRun, artifact: VideoArtifact, meta: dict[str, Any]) -> None:
        try:
            self.store.complete(run.lease, artifact, meta)
        except LeaseLost:  # another worker owns the job, or it was deleted: leave no orphan
            for key in artifact.keys:
                self.storage.delete(key)
            raise
        # A worker killed between its upload and its completion left files under an old lease.
        job = run.lease.job
        remove_job_artifacts(self.storage, job.id, keep=[*artifact.keys, *job.request.input_keys])
        logger.info("job %s completed: %s", run.lease.job.id, meta["timings"])
