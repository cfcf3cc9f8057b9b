"""One clip across two ranks: two CPU processes, gloo, the tiny model.

On the CPU this is the real thing, not a stand-in: diffusers' context parallelism (Ulysses) splits
the transformer's video tokens across the two ranks, with kinema's split plan (see
`kinema.engine.parallel.ContextParallel`), and the rank protocol runs around it: the plan goes to
every rank, the ranks stop together, rank 0 alone reports progress and owns the job. What only a
GPU can show is NCCL, ring attention (cuDNN) and the speed-up.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kinema.catalog.plan import GenerationPlan, plan_generation
from kinema.catalog.registry import TINY_LTX2
from kinema.config import Settings
from kinema.domain import ApiKey, Clip, GenerationRequest, JobStatus
from kinema.engine.parallel import ParallelRunner
from kinema.service import Services
from kinema.wiring import build_services
from kinema.worker.multi_gpu import launch_ranks, rank_devices, run_parallel_worker
from kinema.worker.runner import Worker
from kinema.worker.supervisor import EXIT_MODEL_UNAVAILABLE
from tests.runners import HookedRunner

OWNER = ApiKey(id="owner", name="owner", created_at=0.0)
RESULTS = "parallel-results.pkl"
# 16:9 5 s: every forward splits (stage 1: 16 latent frames x 2 x 1 tokens, refine 16 x 4 x 2).
# 1:1 10 s: stage 1 has 31 x 1 x 1 tokens, odd: it runs whole on both ranks, the refine splits.
CLIPS = {
    "split": GenerationRequest(model="tiny-ltx2", prompt="a bell rings", duration=5, seed=3),
    "odd_stage_1": GenerationRequest(
        model="tiny-ltx2", prompt="rain on a tin roof", duration=10, aspect_ratio="1:1", seed=11
    ),
}
CANCEL_AT_STEP = 2  # of stage 1's 8


def tiny_settings(data_dir: Path, tiny_weights: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        model="tiny-ltx2",
        tiny_weights=str(tiny_weights),
        device="cpu",
        lease_seconds=10,
        idle_wait_seconds=0.2,
        progress_min_interval=0.0,
    )


def plan_of(request: GenerationRequest) -> GenerationPlan:
    return plan_generation(request, TINY_LTX2, request.seed or 0)


def recorder(steps: list[tuple[int, int]]) -> Callable[[int, int], None]:
    return lambda done, total: steps.append((done, total))


def scenarios_on_rank_0(engine: ParallelRunner, settings: Settings, stop: threading.Event) -> int:
    """Rank 0's part of the module's scenarios (rank 1 follows); results go to a file."""
    results: dict[str, Any] = {"features": dict(engine.features)}
    for name, request in CLIPS.items():
        steps: list[tuple[int, int]] = []
        clip = engine.generate(plan_of(request), recorder(steps), lambda: False)
        assert engine.last_agreement is not None
        results[name] = {
            "frames": clip.frames,
            "audio": clip.audio,
            "steps": steps,
            "followers": engine.channel.outcomes(),
            "agreements": engine.last_agreement.calls,
        }
    assert engine.parallel is not None
    results["forwards"] = (engine.parallel.split_forwards, engine.parallel.whole_forwards)
    engine.warm_up(seconds=0.5)
    results["warm_up"] = engine.channel.outcomes()

    # A job through the normal worker and a SQLite store, canceled during stage 1.
    services = build_services(settings)
    try:
        job = services.jobs.submit(OWNER, GenerationRequest(model="tiny-ltx2", prompt="a drum"))
        hooked = HookedRunner(engine, CANCEL_AT_STEP, lambda: services.store.request_cancel(job.id))
        worker = Worker(services.store, services.artifacts, hooked, settings)
        worker.run_once()
        after = services.store.get_job(job.id)
        results["cancel"] = {
            "status": after.status if after else None,
            "error_name": after.error_name if after else None,
            "rank_0_steps": [done for done, _ in hooked.steps],
            "followers": engine.channel.outcomes(),
            "artifacts": [p for p in settings.artifacts_dir.rglob("*.mp4")],
        }
    finally:
        services.close()
    (settings.data_dir / RESULTS).write_bytes(pickle.dumps(results))
    return 0


@pytest.fixture(scope="module")
def scenarios(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = tiny_settings(tmp_path_factory.mktemp("parallel") / "data", tiny_weights)
    settings.data_dir.mkdir(parents=True)
    code = launch_ranks(settings, ["cpu", "cpu"], scenarios_on_rank_0)
    assert code == 0
    results: dict[str, Any] = pickle.loads((settings.data_dir / RESULTS).read_bytes())
    return results


@pytest.fixture(scope="module")
def single_process_clips(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from kinema.engine.pipelines import load_engine

    settings = tiny_settings(tmp_path_factory.mktemp("single"), tiny_weights)
    engine = load_engine(TINY_LTX2, settings)
    never = lambda: False  # noqa: E731
    return {
        name: engine.generate(plan_of(r), lambda d, t: None, never) for name, r in CLIPS.items()
    }


def test_the_transformer_is_split_across_the_ranks(scenarios: dict[str, Any]) -> None:
    assert scenarios["features"]["context_parallel"] == "ulysses x2"
    assert scenarios["features"]["attention"] == "native"
    split, whole = scenarios["forwards"]
    # "split": 8 + 3 forwards split; "odd_stage_1": 8 whole (31 tokens), 3 split.
    assert (split, whole) == (8 + 3 + 3, 8)
    assert scenarios["warm_up"] == {1: ("done", TINY_LTX2.total_steps)}  # on every rank too


@pytest.mark.parametrize("name", list(CLIPS))
def test_the_clip_across_two_ranks_is_numerically_the_single_process_clip(
    name: str, scenarios: dict[str, Any], single_process_clips: dict[str, Clip]
) -> None:
    """Not bit-identical: the attention runs on head groups and the sums round differently.
    Video: at most one level of 255 off, on a tiny share of the pixels; audio: ~1e-5."""
    made, alone = scenarios[name], single_process_clips[name]
    assert made["frames"].shape == alone.frames.shape
    diff = np.abs(made["frames"].astype(np.int16) - alone.frames.astype(np.int16))
    assert diff.max() <= 1 and diff.mean() < 1e-3
    assert made["audio"] is not None and alone.audio is not None
    np.testing.assert_allclose(made["audio"], alone.audio, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", list(CLIPS))
def test_rank_0_reports_each_step_once_and_the_ranks_stay_in_step(
    name: str, scenarios: dict[str, Any]
) -> None:
    made = scenarios[name]
    total = TINY_LTX2.total_steps
    assert made["steps"] == [(done, total) for done in range(1, total + 1)]
    assert made["followers"] == {1: ("done", total)}
    # One "canceled?" before the clip, one per step, one after each of the two stages.
    assert made["agreements"] == 1 + total + 2


def test_a_cancel_during_stage_1_stops_both_ranks_and_the_job_ends_canceled(
    scenarios: dict[str, Any],
) -> None:
    canceled = scenarios["cancel"]
    assert canceled["rank_0_steps"] == list(range(1, CANCEL_AT_STEP + 1))
    assert canceled["followers"] == {1: ("canceled", CANCEL_AT_STEP)}
    assert canceled["status"] is JobStatus.CANCELED and canceled["error_name"] == "Canceled"
    assert canceled["artifacts"] == []


@pytest.fixture
def services(tmp_path: Path, tiny_weights: Path) -> Iterator[Services]:
    built = build_services(tiny_settings(tmp_path / "data", tiny_weights))
    yield built
    built.close()


def test_a_job_completes_through_the_parallel_worker_on_two_cpu_ranks(
    services: Services,
) -> None:
    settings = services.settings
    job = services.jobs.submit(OWNER, GenerationRequest(model="tiny-ltx2", prompt="waves", seed=5))
    stop = threading.Event()
    codes: list[int] = []
    launcher = threading.Thread(
        target=lambda: codes.append(
            run_parallel_worker(settings, devices=["cpu", "cpu"], stop=stop)
        )
    )
    launcher.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and launcher.is_alive():
            current = services.store.get_job(job.id)
            if current and current.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
                break
            time.sleep(0.2)
    finally:
        stop.set()
        launcher.join(60)
    assert not launcher.is_alive() and codes == [0]
    done = services.store.get_job(job.id)
    assert done and done.status is JobStatus.COMPLETED and done.progress == 100.0
    assert done.artifact and done.artifact.has_audio
    assert (done.artifact.width, done.artifact.height) == TINY_LTX2.output_sizes["16:9"]
    assert services.artifacts.path_for(done.artifact.key).is_file()  # type: ignore[attr-defined]
    assert done.meta["timings"]["stage1"] > 0


def fail_at_step_3(engine: ParallelRunner, settings: Settings, stop: threading.Event) -> int:
    """Rank 0 fails in the middle of a clip while rank 1 waits in that step's collective."""

    def step(done: int, total: int) -> None:
        if done == 3:
            raise RuntimeError("CUDA out of memory (simulated)")

    try:
        engine.generate(plan_of(CLIPS["split"]), step, lambda: False)
        raised = ""
    except RuntimeError as exc:
        raised = str(exc)
    # `stop`: the rank's worker would end here.
    outcome = {"raised": raised, "broken": engine.broken, "stop": stop.is_set()}
    (settings.data_dir / RESULTS).write_bytes(pickle.dumps(outcome))
    return 0


def test_a_failure_on_rank_0_in_a_clip_ends_every_rank_with_a_failure_code(
    tiny_weights: Path, tmp_path: Path
) -> None:
    """The ranks are out of step (rank 1 waits in a collective): the group ends, code 1, so that
    a supervisor starts it again; nothing hangs."""
    settings = tiny_settings(tmp_path / "data", tiny_weights)
    settings.data_dir.mkdir(parents=True)
    start = time.monotonic()
    assert launch_ranks(settings, ["cpu", "cpu"], fail_at_step_3, grace=3.0) == 1
    assert time.monotonic() - start < 60
    outcome = pickle.loads((settings.data_dir / RESULTS).read_bytes())
    assert outcome == {"raised": "CUDA out of memory (simulated)", "broken": True, "stop": True}


@pytest.mark.parametrize("problem", ["no weights", "ring attention on a CPU"])
def test_ranks_that_cannot_serve_the_model_exit_model_unavailable(
    problem: str, tmp_path: Path, tiny_weights: Path
) -> None:
    """Exit code 3: a supervisor does not restart them. Ring attention needs the log-sum-exp of
    cuDNN attention (CUDA); diffusers' native attention on a CPU cannot give it."""
    weights = tmp_path / "no-such-model" if problem == "no weights" else tiny_weights
    mode = "ring" if problem.startswith("ring") else "ulysses"
    settings = tiny_settings(tmp_path / "data", weights)
    code = run_parallel_worker(settings, devices=["cpu", "cpu"], mode=mode)
    assert code == EXIT_MODEL_UNAVAILABLE


def test_gpu_ranks_see_just_their_gpus_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert rank_devices([2, 3], None) == (("cuda:0", "cuda:1"), "2,3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert rank_devices([1, 3], None) == (("cuda:0", "cuda:1"), "5,7")
    assert rank_devices(None, ["cpu", "cpu"]) == (("cpu", "cpu"), None)
    with pytest.raises(ValueError):
        rank_devices([0, 0], None)
