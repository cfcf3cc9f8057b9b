"""The worker's recipe with the real tiny engine, SQLite store and local artifacts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kinema.catalog.plan import GenerationPlan
from kinema.catalog.registry import TINY_LTX2
from kinema.catalog.runner import ClipRunner
from kinema.config import Settings
from kinema.domain import ApiKey, Clip, GenerationRequest, JobStatus
from kinema.engine.pipelines import ModelRunner, load_engine
from kinema.service import Services
from kinema.store.sql import jobs
from kinema.store_protocol import JobStore
from kinema.wiring import build_services
from kinema.worker.runner import Worker
from tests.conftest import Clock
from tests.runners import HookedRunner

OWNER = ApiKey(id="owner", name="owner", created_at=0.0)


@pytest.fixture(scope="module")
def engine(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelRunner:
    settings = Settings(data_dir=tmp_path_factory.mktemp("engine"), tiny_weights=str(tiny_weights))
    return load_engine(TINY_LTX2, settings)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(Settings(data_dir=tmp_path, model="tiny-ltx2", lease_seconds=5))
    yield built
    built.close()


def submit(services: Services, **fields: Any) -> str:
    request = GenerationRequest(model="tiny-ltx2", prompt="a bell rings", **fields)
    return services.jobs.submit(OWNER, request).id


def worker_for(services: Services, engine: ClipRunner) -> Worker:
    return Worker(services.store, services.artifacts, engine, services.settings)


def stored_files(services: Services) -> list[Path]:
    root = services.settings.artifacts_dir
    return [p for p in root.rglob("*.mp4") if ".staging" not in p.parts]


def test_a_job_runs_to_completion(services: Services, engine: ModelRunner) -> None:
    job_id = submit(services, duration=5, seed=3)
    hooked = HookedRunner(engine, at_step=0, hook=lambda: None)
    assert worker_for(services, hooked).run_once() is True
    job = services.store.get_job(job_id)
    assert job and job.status is JobStatus.COMPLETED and job.progress == 100.0
    assert job.artifact and job.artifact.duration == 5.0 and job.artifact.has_audio
    assert (job.artifact.width, job.artifact.height) == TINY_LTX2.output_sizes["16:9"]
    assert {"generate", "encode", "store"} <= job.meta["timings"].keys()
    assert job.meta["generated"]["frames"] == 121
    assert [done for done, _ in hooked.steps] == list(range(1, len(hooked.steps) + 1))
    assert stored_files(services) == [services.artifacts.path_for(job.artifact.key)]
    assert worker_for(services, engine).run_once() is False


def test_a_job_that_asked_for_enhancement_records_the_prompt_it_ran(
    services: Services, engine: ModelRunner
) -> None:
    job_id = submit(services, duration=1, seed=3, enhance_prompt=True)
    assert worker_for(services, engine).run_once() is True
    job = services.store.get_job(job_id)
    assert job and job.status is JobStatus.COMPLETED
    assert job.meta["prompt_used"] and job.meta["prompt_used"] != job.request.prompt
    assert "prompt_enhance" in job.meta["timings"]


def test_a_canceled_job_ends_canceled_and_keeps_no_output(
    services: Services, engine: ModelRunner
) -> None:
    job_id = submit(services)

    def request_cancel() -> None:
        services.store.request_cancel(job_id)

    worker = worker_for(services, HookedRunner(engine, at_step=1, hook=request_cancel))
    worker.settings = services.settings.model_copy(update={"progress_min_interval": 0.0})
    worker.run_once()
    job = services.store.get_job(job_id)
    assert job and job.status is JobStatus.CANCELED and job.error_name == "Canceled"
    assert stored_files(services) == []


def test_stopping_gives_the_running_job_back(services: Services, engine: ModelRunner) -> None:
    job_id = submit(services)
    stop = threading.Event()
    worker = worker_for(services, HookedRunner(engine, at_step=1, hook=stop.set))
    worker.run(stop)
    job = services.store.get_job(job_id)
    assert job and job.status is JobStatus.QUEUED and job.attempts == 0
    assert stored_files(services) == []


def test_an_engine_failure_ends_the_job_in_error(services: Services, engine: ModelRunner) -> None:
    job_id = submit(services)

    def explode() -> None:
        raise RuntimeError("CUDA out of memory (simulated)")

    worker_for(services, HookedRunner(engine, at_step=2, hook=explode)).run_once()
    job = services.store.get_job(job_id)
    assert job and job.status is JobStatus.FAILED and job.error_name == "GenerationFailed"
    assert "CUDA out of memory" in (job.error_message or "")


def test_a_storage_failure_tells_the_owner_its_cause_but_no_server_path(
    services: Services, engine: ModelRunner, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = submit(services)
    (services.settings.artifacts_dir / job_id).write_text("a file where the job's folder goes")
    worker_for(services, HookedRunner(engine, at_step=0, hook=lambda: None)).run_once()
    job = services.store.get_job(job_id)
    assert job and job.status is JobStatus.FAILED and job.error_message
    assert job.error_message.startswith(("FileExistsError", "NotADirectoryError"))
    assert str(services.settings.data_dir) not in job.error_message
    assert "/" not in job.error_message
    assert str(services.settings.artifacts_dir) in caplog.text  # the detail is in the log


def test_a_worker_that_lost_its_lease_discards_its_output(
    services: Services, engine: ModelRunner
) -> None:
    job_id = submit(services)
    store = services.store
    winner: list[Any] = []

    def expire_and_steal() -> None:
        with store._engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(lease_expires_at=0.0))
        winner.append(store.claim(["tiny-ltx2"], "other-worker", 60))

    worker = worker_for(services, HookedRunner(engine, at_step=1, hook=expire_and_steal))
    worker.settings = services.settings.model_copy(update={"progress_min_interval": 0.0})
    worker.run_once()
    job = store.get_job(job_id)
    assert job and job.status is JobStatus.RUNNING and job.attempts == 2
    assert winner[0] is not None and winner[0].worker_id == "other-worker"
    assert stored_files(services) == []


class ClockedSteps(HookedRunner):
    """Records what the store shows before each step, then moves `clock` by `step_seconds`."""

    def __init__(self, runner: ClipRunner, store: JobStore, job_id: str, clock: Clock) -> None:
        super().__init__(runner, 0, lambda: None)
        self.store, self.job_id, self.clock = store, job_id, clock
        self.step_seconds = 0.0
        self.seen: list[tuple[float, str | None]] = []

    def generate(self, plan: GenerationPlan, on_step: Any, is_canceled: Any) -> Clip:
        def step(done: int, total: int) -> None:
            job = self.store.get_job(self.job_id)
            assert job is not None
            self.seen.append((job.progress, job.stage))
            self.clock.now += self.step_seconds
            on_step(done, total)

        return self.runner.generate(plan, step, is_canceled)


def denoising(done: int, total: int) -> tuple[float, str]:
    return (90.0 * done / total, f"denoising {done}/{total}") if done else (0.0, "denoising")


def test_progress_reaches_the_store_while_denoising(
    services: Services, engine: ModelRunner
) -> None:
    job_id = submit(services)
    clock = Clock()
    runner = ClockedSteps(engine, services.store, job_id, clock)
    # longer than the report interval: every step's report goes through
    runner.step_seconds = services.settings.progress_min_interval * 1.2
    worker = Worker(services.store, services.artifacts, runner, services.settings, clock=clock)
    worker.run_once()
    total = TINY_LTX2.total_steps
    assert runner.seen == [denoising(done, total) for done in range(total)]


def test_progress_reports_closer_than_the_interval_are_dropped(
    services: Services, engine: ModelRunner
) -> None:
    job_id = submit(services)
    clock = Clock()
    runner = ClockedSteps(engine, services.store, job_id, clock)
    runner.step_seconds = services.settings.progress_min_interval * 0.6
    worker = Worker(services.store, services.artifacts, runner, services.settings, clock=clock)
    worker.run_once()
    total = TINY_LTX2.total_steps
    # two steps make an interval: only every second step's report is sent
    assert total >= 4
    assert runner.seen == [denoising(done - done % 2, total) for done in range(total)]
    job = services.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.progress == 100.0


OVERLAP_TIMEOUT = 30.0  # only a worker that does not overlap waits this long, and then fails


def test_encoding_one_job_overlaps_generating_the_next(
    services: Services, engine: ModelRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kinema.media

    first_encode_began = threading.Event()
    second_generate_began = threading.Event()
    overlapped: dict[str, bool] = {}
    stop = threading.Event()
    real_encode = kinema.media.encode_mp4
    encodes = 0

    def gated_encode(*args: Any, **kwargs: Any) -> Any:
        """Job 1's encode cannot end before job 2's generation has begun."""
        nonlocal encodes
        encodes += 1
        if encodes == 1:
            first_encode_began.set()
            overlapped["encode"] = second_generate_began.wait(OVERLAP_TIMEOUT)
        else:
            stop.set()  # job 2 is generated: the worker stops once it is stored
        return real_encode(*args, **kwargs)

    class Gated(HookedRunner):
        generations = 0

        def generate(self, plan: GenerationPlan, on_step: Any, is_canceled: Any) -> Clip:
            """Job 2's generation cannot end before job 1's encode has begun."""
            self.generations += 1
            if self.generations != 2:
                return self.runner.generate(plan, on_step, is_canceled)
            second_generate_began.set()
            overlapped["generate"] = first_encode_began.wait(OVERLAP_TIMEOUT)
            try:
                return self.runner.generate(plan, on_step, is_canceled)
            except BaseException:
                stop.set()  # job 2 will not be encoded: nothing else would stop the worker
                raise

    monkeypatch.setattr(kinema.media, "encode_mp4", gated_encode)
    first, second = submit(services, seed=1), submit(services, seed=2)
    worker = worker_for(services, Gated(engine, 0, lambda: None))
    worker.settings = services.settings.model_copy(update={"idle_wait_seconds": 0.01})
    worker.run(stop)
    # the intervals intersect: job 2 was denoised while job 1 was still being encoded
    assert overlapped == {"encode": True, "generate": True}
    for job_id in (first, second):
        job = services.store.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED
