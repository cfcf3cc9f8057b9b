"""The worker's recipe with the real tiny engine, SQLite store and local artifacts."""

from __future__ import annotations

import threading
import time
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
from kinema.wiring import build_services
from kinema.worker.runner import Worker
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


def test_progress_reaches_the_store_while_denoising(
    services: Services, engine: ModelRunner
) -> None:
    job_id = submit(services)
    store = services.store
    seen: list[tuple[float, str | None]] = []

    class Recording(HookedRunner):
        def generate(self, plan: GenerationPlan, on_step: Any, is_canceled: Any) -> Clip:
            def step(done: int, total: int) -> None:
                job = store.get_job(job_id)
                assert job is not None
                seen.append((job.progress, job.stage))
                time.sleep(0.3)  # longer than the report interval: this step's report goes through
                on_step(done, total)

            return self.runner.generate(plan, step, is_canceled)

    worker_for(services, Recording(engine, 0, lambda: None)).run_once()
    total = TINY_LTX2.total_steps
    assert seen[0] == (0.0, "denoising")
    assert seen[1] == (90.0 / total, f"denoising 1/{total}")
    assert seen[-1] == (90.0 * (total - 1) / total, f"denoising {total - 1}/{total}")


def test_encoding_one_job_overlaps_generating_the_next(
    services: Services, engine: ModelRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kinema.media

    spans: dict[str, list[tuple[float, float]]] = {"generate": [], "encode": []}
    real_encode = kinema.media.encode_mp4

    def slow_encode(*args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        time.sleep(1.0)  # an encode long enough to see whether the next job waits for it
        result = real_encode(*args, **kwargs)
        spans["encode"].append((start, time.monotonic()))
        return result

    class Timed(HookedRunner):
        def generate(self, plan: GenerationPlan, on_step: Any, is_canceled: Any) -> Clip:
            start = time.monotonic()
            clip = self.runner.generate(plan, on_step, is_canceled)
            spans["generate"].append((start, time.monotonic()))
            return clip

    monkeypatch.setattr(kinema.media, "encode_mp4", slow_encode)
    first, second = submit(services, seed=1), submit(services, seed=2)
    stop = threading.Event()
    worker = worker_for(services, Timed(engine, 0, lambda: None))

    def stop_when_both_done() -> None:
        store = services.store
        while not all(store.get_job(i).status is JobStatus.COMPLETED for i in (first, second)):  # type: ignore[union-attr]
            time.sleep(0.05)
        stop.set()

    watcher = threading.Thread(target=stop_when_both_done, daemon=True)
    watcher.start()
    worker.run(stop)
    watcher.join(5)
    first_encode = spans["encode"][0]
    second_generate = spans["generate"][1]
    # the intervals intersect: job 2 was denoised while job 1 was still being encoded
    assert second_generate[0] < first_encode[1] and first_encode[0] < second_generate[1]
